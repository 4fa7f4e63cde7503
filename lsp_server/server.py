"""The Quill language server: a pygls `LanguageServer` that owns the editor-side state.

Features live in lsp_server/features/ and register themselves on the server; lsp_server/app.py
wires them. This module and everything it imports stay light: no vllm, torch, faiss or
sentence-transformers, so an editor gets a ready server in well under a second.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcServerNotInitialized
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from lsp_server.methods import INLINE_COMPLETION_REFRESH
from lsp_server.serving_client import ServingClient
from lsp_server.settings import Settings, parse_settings
from lsp_server.state import SessionState
from lsp_server.telemetry import Telemetry
from lsp_server.workspace_identity import relative_path, workspace_id

logger = logging.getLogger(__name__)

SERVER_NAME = "quill"
SERVER_VERSION = "0.1.0"

# Requests a client may send before `initialize` completes (LSP: everything else gets -32002).
_ALLOWED_BEFORE_INITIALIZE = {types.INITIALIZE, types.SHUTDOWN, types.EXIT}


class QuillProtocol(LanguageServerProtocol):
    """Answers requests that arrive before `initialize` with ServerNotInitialized."""

    def _handle_request(self, msg_id: Any, method_name: str, params: Any) -> None:
        if self._workspace is None and method_name not in _ALLOWED_BEFORE_INITIALIZE:
            logger.warning(
                "request %r before initialize; answering ServerNotInitialized", method_name
            )
            error = JsonRpcServerNotInitialized(f"{method_name} sent before initialize")
            self._send_response(msg_id, error=error.to_response_error())
            return
        if method_name != types.WORKSPACE_EXECUTE_COMMAND:
            super()._handle_request(msg_id, method_name, params)
            return
        before = set(self._request_futures)
        super()._handle_request(msg_id, method_name, params)
        self._pass_on_cancellation(msg_id, before)

    def _pass_on_cancellation(self, msg_id: Any, before: set[Any]) -> None:
        # pygls runs a command's handler as a task of its own, under a new id, so $/cancelRequest
        # of workspace/executeCommand would cancel only the outer future and leave the command
        # (a repair's gRPC call, say) running. Pass the cancellation on to the handler's task.
        outer = self._request_futures.get(msg_id)
        inner = [
            f for key, f in self._request_futures.items() if key not in before and f is not outer
        ]
        if outer is None or not inner:
            return

        def on_done(future: Any) -> None:
            if future.cancelled():
                for task in inner:
                    task.cancel()

        outer.add_done_callback(on_done)


class QuillLanguageServer(LanguageServer):
    """The server and what it owns: settings, the serving connection, telemetry and the
    session's typed state. Features (lsp_server/features/) register handlers on it and hook
    into its lifecycle; `lsp_server.app.create_server` wires them."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(SERVER_NAME, SERVER_VERSION, protocol_cls=QuillProtocol)
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
        # Called with a document's uri after each change, and when it closes.
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
            self.serving = ServingClient(self.settings.serving_address, self.notify_user)
        return self.serving

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
