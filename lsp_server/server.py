"""The Quill language server: a pygls `LanguageServer` that owns the editor-side state.

Features live in lsp_server/features/ and register themselves on the server; lsp_server/app.py
wires them. This module and everything it imports stay light: no vllm, torch, faiss or
sentence-transformers, so an editor gets a ready server in well under a second.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from lsp_server.methods import INLINE_COMPLETION_REFRESH
from lsp_server.protocol import QuillProtocol
from lsp_server.serving_client import ServingClient
from lsp_server.settings import Settings, parse_settings
from lsp_server.state import SessionState
from lsp_server.telemetry import Telemetry
from lsp_server.validation import strict_converter
from lsp_server.workspace_identity import relative_path, workspace_id
from quill.channel import ChannelConfigError, ClientSecurity, client_security

logger = logging.getLogger(__name__)

SERVER_NAME = "quill"
SERVER_VERSION = "0.1.0"


class QuillLanguageServer(LanguageServer):
    """The server and what it owns: settings, the serving connection, telemetry and the
    session's typed state. Features (lsp_server/features/) register handlers on it and hook
    into its lifecycle; `lsp_server.app.create_server` wires them."""

    protocol: QuillProtocol

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(
            SERVER_NAME,
            SERVER_VERSION,
            protocol_cls=QuillProtocol,
            converter_factory=strict_converter,
        )
        self.settings = settings or Settings()
        # Settings given on the command line win over initializationOptions for these keys.
        self.pinned_settings: dict[str, Any] = {}
        self.serving: ServingClient | None = None
        self.telemetry = Telemetry(self._send_events)
        self.state = SessionState()
        # Run after `initialized` and at `shutdown`, in registration order (features' own
        # background work: the workspace sync, say).
        self.initialized_hooks: list[Callable[[], Awaitable[None] | None]] = []
        self.shutdown_hooks: list[Callable[[], Awaitable[None] | None]] = []
        # Called with a document's uri when it opens, after each change, and when it closes.
        self.open_listeners: list[Callable[[str], None]] = []
        self.document_listeners: list[Callable[[str], None]] = []
        self.close_listeners: list[Callable[[str], None]] = []

    async def _send_events(self, request: Any) -> bool:
        return await self.serving_client().report_events(request, self.workspace_id())

    def apply_initialization_options(self, options: Any) -> None:
        settings, problems = parse_settings(options)
        for name, value in self.pinned_settings.items():
            setattr(settings, name, value)
        self.settings = settings
        if problems:
            # One message for all problems; the server goes on with defaults for those keys.
            self.notify_user("Quill settings: " + "; ".join(problems) + " (defaults used)", True)

    def refresh_inline_completion(self, uri: str) -> None:
        if not self.state.inline_completion_refresh:
            return
        self.state.counters.refreshes_sent += 1
        try:
            self.protocol.notify(INLINE_COMPLETION_REFRESH, {"textDocument": {"uri": uri}})
        except Exception:  # noqa: BLE001 - the client is gone (shutdown): nothing to refresh
            logger.debug("refresh not sent", exc_info=True)

    def serving_client(self) -> ServingClient:
        if self.serving is None:
            self.serving = ServingClient(
                self.settings.serving_address, self.notify_user, self._serving_security()
            )
        return self.serving

    def open_document(self, uri: str) -> TextDocument | None:
        """The open document `uri` names, however the client escaped it (pygls keys its
        documents by the unquoted URI); None if it is not open."""
        return self.workspace.text_documents.get(unquote(uri))

    def _serving_security(self) -> ClientSecurity | None:
        settings = self.settings
        try:
            return client_security(
                settings.serving_address,
                token=settings.serving_token,
                token_file=settings.serving_token_file,
                tls=settings.serving_tls,
                ca_file=settings.serving_ca_file,
                client_cert=settings.serving_client_cert,
                client_key=settings.serving_client_key,
            )
        except ChannelConfigError as error:
            # Calls go out without a token and get UNAUTHENTICATED; the user is told why.
            self.notify_user(f"Quill: {error}", True)
            return ClientSecurity()

    def workspace_id(self) -> str:
        return workspace_id(self.workspace.root_uri)

    def relative_path(self, uri: str) -> str:
        return relative_path(self.workspace.root_uri, uri)

    def notify_user(self, message: str, is_error: bool) -> None:
        kind = types.MessageType.Warning if is_error else types.MessageType.Info
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))
        except Exception:  # noqa: BLE001 - no client connection (tests, shutdown)
            logger.info("%s", message)

    def report_server_error(self, error: Exception, source: Any) -> None:
        # pygls would pop a message up for every failure; log instead, so a client sending
        # malformed input cannot flood the user with popups.
        logger.error("server error (%s): %s", getattr(source, "__name__", source), error)
