"""The one place that wires the language server: the server and every feature it offers."""

from __future__ import annotations

from lsp_server.features import (
    acceptance,
    api_search,
    documents,
    inline_completion,
    lifecycle,
    repair,
    retention,
    workspace_sync,
)
from lsp_server.server import QuillLanguageServer
from lsp_server.settings import Settings

# Registration order is the order lifecycle hooks and document listeners run in.
FEATURES = (
    lifecycle,
    documents,
    inline_completion,
    acceptance,
    retention,
    workspace_sync,
    repair,
    api_search,
)


def create_server(settings: Settings | None = None) -> QuillLanguageServer:
    server = QuillLanguageServer(settings)
    for feature in FEATURES:
        feature.register(server)
    return server
