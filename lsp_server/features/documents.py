"""Document opens, changes and closes: count what the user typed (for the share of code from
suggestions), tell the features that follow documents, free a closed document's state."""

from __future__ import annotations

from lsprotocol import types

from lsp_server.server import QuillLanguageServer


def register(server: QuillLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def on_open(ls: QuillLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        # pygls has already made its copy of the document.
        for listener in ls.open_listeners:
            listener(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def on_change(ls: QuillLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        # pygls has already applied the changes to its copy of the document.
        uri = params.text_document.uri
        document = ls.open_document(uri)
        language = document.language_id if document is not None else ""
        for change in params.content_changes:
            ls.telemetry.text_inserted(uri, change.text, language or "")
        for listener in ls.document_listeners:
            listener(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: QuillLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        # pygls has already dropped its copy of the document.
        uri = params.text_document.uri
        ls.state.forget_document(uri)
        ls.telemetry.document_closed(uri)
        for listener in ls.close_listeners:
            listener(uri)
