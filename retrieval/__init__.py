"""Repository retrieval (chunk, embed, index, search): a library with no gRPC or LSP knowledge.

Not built yet; tracked as its own issue. `serving` will be its only user.
"""
