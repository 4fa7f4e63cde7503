"""Repository retrieval (chunk, embed, index, search): a library with no gRPC or LSP knowledge.

`serving` is its only user; see docs/retrieval.md.
"""

from retrieval.index import Hit, WorkspaceIndex, content_digest

__all__ = ["Hit", "WorkspaceIndex", "content_digest"]
