"""The names Quill adds to LSP: its commands, Copilot's notifications it takes, and its own
server-to-client notification. Shared by the features, the editor clients' tests and the Python
clients, without importing the server (and its gRPC stack)."""

# workspace/executeCommand commands.
ACCEPT_COMMAND = "quill.acceptCompletion"
STATS_COMMAND = "quill.stats"
REPAIR_COMMAND = "quill.repair"
REPAIR_LINE_COMMAND = "quill.repairLine"
SEARCH_API_COMMAND = "quill.searchApi"

# Copilot-compatible client notifications about inline completion items.
DID_SHOW_COMPLETION = "textDocument/didShowCompletion"
DID_PARTIALLY_ACCEPT_COMPLETION = "textDocument/didPartiallyAcceptCompletion"

# Server-to-client notification ({textDocument: {uri}}): a suggestion being shown for that
# document has grown (a streamed block's next lines); ask for the inline completion again at the
# same place. LSP has no inline-completion refresh, so a client opts in with the experimental
# client capability below.
INLINE_COMPLETION_REFRESH = "quill/inlineCompletionRefresh"
INLINE_COMPLETION_REFRESH_CAPABILITY = "inlineCompletionRefreshSupport"
