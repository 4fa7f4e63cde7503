"""Quill's additions to LSP, shared by the server and the Python clients without importing the
server (and its gRPC stack)."""

# Server-to-client notification ({textDocument: {uri}}): a suggestion being shown for that
# document has grown (a streamed block's next lines); ask for the inline completion again at the
# same place. LSP has no inline-completion refresh, so a client opts in with the experimental
# client capability below.
INLINE_COMPLETION_REFRESH = "quill/inlineCompletionRefresh"
INLINE_COMPLETION_REFRESH_CAPABILITY = "inlineCompletionRefreshSupport"
