"""The Quill language server: a pygls `LanguageServer` that owns the editor-side state.

Features live in their own modules and register themselves on the server in `create_server`.
This module and everything it imports stay light: no vllm, torch, faiss or sentence-transformers,
so an editor gets a ready server in well under a second.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcServerNotInitialized
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from lsp_server.extensions import INLINE_COMPLETION_REFRESH
from lsp_server.serving_client import ServingClient
from lsp_server.settings import Settings, parse_settings
from lsp_server.telemetry import Telemetry
from lsp_server.timing import AnswerTimes, PauseHistory
from lsp_server.typeahead import TokenUsage, TypeAheadCache

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
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(SERVER_NAME, SERVER_VERSION, protocol_cls=QuillProtocol)
        self.settings = settings or Settings()
        # Settings given on the command line win over initializationOptions for these keys.
        self.pinned_settings: dict[str, Any] = {}
        self.serving: ServingClient | None = None
        self.telemetry = Telemetry(self._send_events)
        self.typeahead = TypeAheadCache()
        # Engine tokens behind suggestions the editor was shown (the honest "not wasted").
        self.token_usage = TokenUsage()
        self.early_first_lines = 0
        # (seconds to the early first line, seconds to the whole block) of streamed blocks.
        self.streamed_blocks: deque[tuple[float, float]] = deque(maxlen=1000)
        # The last serving calls (lsp_server.inline_completion.CompletionRecord).
        self.completion_log: deque[Any] = deque(maxlen=2000)
        # The serving call in flight per document (lsp_server.inline_completion.InFlight), so a
        # newer request can reuse or supersede it.
        self.inflight: dict[str, Any] = {}
        # Number of the newest inline completion request per document: an older one that is
        # still waiting answers with nothing.
        self.latest_completion: dict[str, int] = {}
        self.superseded_count = 0
        # Of those, cancelled when a keystroke came (didChange), before the next request.
        self.cancelled_on_change = 0
        # What lsp_server.timing learns: the user's pauses and serving's answer times; when the
        # last keystroke reached each document, and which automatic request's pause is open.
        self.pauses = PauseHistory()
        self.answer_times = AnswerTimes()
        self.keystroke_at: dict[str, float] = {}
        self.open_pause: dict[str, tuple[str, float]] = {}
        self.held_back = 0  # automatic requests that waited for a longer pause
        # Whether the client takes INLINE_COMPLETION_REFRESH, and how many were sent.
        self.inline_completion_refresh = False
        self.refreshes_sent = 0
        self.reused_count = 0
        self.accepted_count = 0
        self.accepted_chars = 0
        self.shown_count = 0
        # lsp_server.workspace_sync.WorkspaceSync, set when the feature registers.
        self.workspace_sync: Any = None
        # Called with a document's uri after each change (lsp_server.documents_sync).
        self.document_listeners: list[Callable[[str], None]] = []
        # lsp_server.repair.RepairFeature, set when the feature registers.
        self.repair: Any = None

    async def _send_events(self, request: Any) -> bool:
        return await self.serving_client().report_events(request)

    def apply_initialization_options(self, options: Any) -> None:
        settings, problems = parse_settings(options)
        for name, value in self.pinned_settings.items():
            setattr(settings, name, value)
        self.settings = settings
        if problems:
            # One message for all problems; the server goes on with defaults for those keys.
            self.notify_user("Quill settings: " + "; ".join(problems) + " (defaults used)", True)

    def refresh_inline_completion(self, uri: str) -> None:
        if not self.inline_completion_refresh:
            return
        self.refreshes_sent += 1
        try:
            self.protocol.notify(INLINE_COMPLETION_REFRESH, {"textDocument": {"uri": uri}})
        except Exception:  # noqa: BLE001 - the client is gone (shutdown): nothing to refresh
            logger.debug("refresh not sent", exc_info=True)

    def serving_client(self) -> ServingClient:
        if self.serving is None:
            self.serving = ServingClient(self.settings.serving_address, self.notify_user)
        return self.serving

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


def create_server(settings: Settings | None = None) -> QuillLanguageServer:
    from lsp_server import acceptance, documents_sync, inline_completion, lifecycle, repair

    server = QuillLanguageServer(settings)
    lifecycle.register(server)
    documents_sync.register(server)
    inline_completion.register(server)
    acceptance.register(server)
    from lsp_server import workspace_sync

    workspace_sync.register(server)
    repair.register(server)
    from lsp_server import api_search

    api_search.register(server)
    return server
