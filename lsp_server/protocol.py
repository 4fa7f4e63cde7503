"""The edge of the language server: every message from the client is read and checked here,
once, so features see only well-typed values; every request gets exactly one answer; a bad
message costs one log line (rate-limited by lsp_server/log_limit.py).

A frame from the transport (lsp_server/transport.py) goes through:
1. decoding and the JSON-RPC envelope (lsp_server/validation.py): -32700 / -32600;
2. the protocol's state: ServerNotInitialized before `initialize`, InvalidRequest after
   `shutdown` or for a second `initialize`; a notification's method sent with an id, -32600;
   a method nobody handles, -32601;
3. params structured by the strict converter: -32602 naming the field;
then pygls dispatches it. Notifications are never answered: a bad one is logged and dropped.
Handlers' failures become -32603 with a short message; their tracebacks stay in the log at DEBUG.

Document changes are applied here too (lsp_server/text_sync.py): a didChange with a reversed or
out-of-range range is refused whole, and the document is set aside (closed for the features)
until the editor sends its whole text again, so the server never works on a copy that differs
from the editor's.
"""

from __future__ import annotations

import copy as copy_module
import json
import logging
import uuid
from collections.abc import Generator
from functools import partial
from typing import Any
from urllib.parse import unquote

import attrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcRequestCancelled
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
    lsp_method,
)

from lsp_server.custom_messages import MESSAGE_TYPES
from lsp_server.framing import Frame
from lsp_server.text_sync import InvalidChangeError, apply_changes, from_last_whole_text
from lsp_server.validation import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
    Envelope,
    MessageError,
    decode,
    envelope,
    recover_id,
    replace_lone_surrogates,
    structure,
)

logger = logging.getLogger(__name__)

# Requests a client may send before `initialize` completes (LSP: everything else gets -32002).
_ALLOWED_BEFORE_INITIALIZE = {types.INITIALIZE, types.SHUTDOWN}
# Times initialize is structured again with the capabilities that do not fit left out.
_CAPABILITY_ROUNDS = 3
# Futures kept before finished ones are forgotten (see _execute_handler).
_FUTURES_BEFORE_PRUNING = 256
# Longest piece of a client's value (an id, a method) quoted in the log.
_QUOTE_CHARS = 60


def _quote(value: Any) -> str:
    return _short(repr(value))


def _short(text: str) -> str:
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."


def _is_request(message_type: type) -> bool:
    return "id" in attrs.fields_dict(message_type)


class QuillProtocol(LanguageServerProtocol):
    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self._initialize_received = False
        self._initialized_received = False
        # The method of each request being handled, for the line its failure logs.
        self._request_methods: dict[Any, str] = {}
        # Documents whose changes could not be applied, until the editor sends their whole text
        # again: uri -> languageId.
        self._set_aside: dict[str, str] = {}

    @property
    def shutdown_received(self) -> bool:
        return self._shutdown

    # pygls's is an lru_cache wrapper; the lookup is a dict's anyway.
    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        return MESSAGE_TYPES.get(method) or super().get_message_type(method)

    # -- reading what the client sends -------------------------------------------------------

    def receive_frame(self, frame: Frame) -> None:
        """One frame from the transport: read, checked, answered if refused, else handled."""
        notes = [frame.problem] if frame.problem else []
        try:
            message = self._read(frame, notes)
        except MessageError as error:
            self._refuse(error, notes)
            return
        if notes:
            logger.warning("%s", "; ".join(notes))
        if message is not None:
            self.handle_message(message)

    def _read(self, frame: Frame, notes: list[str]) -> Any:
        if not frame.complete:
            if not frame.body:
                return None  # stray bytes: nothing to answer
            raise MessageError(INVALID_REQUEST, "message too large", recover_id(frame.body))
        incoming = envelope(decode(frame.body))
        if incoming.kind == "response":
            return self._response(incoming, notes)
        params = incoming.data.get("params")
        if isinstance(params, (dict, list)):
            replaced = replace_lone_surrogates(params, frame.body)
            if replaced:
                notes.append(
                    f"{_short(incoming.method)}: lone surrogates in {replaced} strings replaced"
                )
        if incoming.kind == "request":
            self._check_request(incoming)
        elif not self._accepts_notification(incoming, notes):
            return None
        if incoming.method == types.TEXT_DOCUMENT_DID_OPEN:
            _language_id_as_text(params, notes)
        return self._typed(incoming, notes)

    def _check_request(self, incoming: Envelope) -> None:
        method, msg_id = incoming.method, incoming.msg_id
        if self._shutdown:
            raise MessageError(INVALID_REQUEST, f"{_short(method)} after shutdown", msg_id)
        if method == types.INITIALIZE and self._initialize_received:
            raise MessageError(INVALID_REQUEST, "initialize was already received", msg_id)
        if self._workspace is None and method not in _ALLOWED_BEFORE_INITIALIZE:
            message = f"{_short(method)} sent before initialize"
            raise MessageError(SERVER_NOT_INITIALIZED, message, msg_id)
        message_type = self.get_message_type(method)
        if message_type is not None and not _is_request(message_type):
            raise MessageError(INVALID_REQUEST, f"{method} is a notification: no id", msg_id)
        if not self._has_handler(method):
            raise MessageError(METHOD_NOT_FOUND, f"method not found: {_quote(method)}", msg_id)

    def _accepts_notification(self, incoming: Envelope, notes: list[str]) -> bool:
        method = incoming.method
        if method == types.EXIT:
            return True
        if self._shutdown or self._workspace is None:
            when = "after shutdown" if self._shutdown else "before initialize"
            notes.append(f"{_quote(method)} {when}: ignored")
            return False
        message_type = self.get_message_type(method)
        if message_type is not None and _is_request(message_type):
            notes.append(f"{method} is a request but came without an id: ignored")
            return False
        if method == types.INITIALIZED and self._initialized_received:
            notes.append("initialized was already received: ignored")
            return False
        if method != types.CANCEL_REQUEST and not self._has_handler(method):
            # Editors send notifications a server may not take (the LSP: ignore them).
            logger.debug("no handler for notification %s: ignored", _quote(method))
            return False
        return True

    def _has_handler(self, method: str) -> bool:
        return method in self.fm.features or method in self.fm.builtin_features

    def _typed(self, incoming: Envelope, notes: list[str]) -> Any:
        method, data = incoming.method, incoming.data
        message_type = self.get_message_type(method)
        if message_type is None:  # methods nobody declared a shape for: params stay JSON
            if incoming.msg_id is not None:
                return JsonRPCRequestMessage(incoming.msg_id, method, "2.0", data.get("params"))
            return JsonRPCNotification(method, "2.0", data.get("params"))
        if method == types.INITIALIZE:
            message = self._initialize(data, message_type, notes)
        else:
            message = structure(self._converter, data, message_type)
        if method == types.INITIALIZE:
            self._initialize_received = True
        elif method == types.INITIALIZED:
            self._initialized_received = True
        return message

    def _initialize(self, data: dict[str, Any], message_type: type, notes: list[str]) -> Any:
        """An editor's unusual capability must not make the server unusable: capabilities of
        the wrong shape are left out (as if the editor had not declared them), the rest kept."""
        for _ in range(_CAPABILITY_ROUNDS):
            try:
                return structure(self._converter, data, message_type)
            except MessageError as error:
                lenient = _without_fields(data, error.fields, "params.capabilities.")
                if lenient is None:
                    raise
                notes.append(f"initialize: capabilities left out: {error.message}")
                data = lenient
        return structure(self._converter, data, message_type)

    def _response(self, incoming: Envelope, notes: list[str]) -> Any:
        """A response to one of the server's own requests (applyEdit, progress, ...)."""
        msg_id = incoming.msg_id
        future = self._request_futures.get(msg_id)  # type: ignore[arg-type]
        result_type = self._result_types.pop(msg_id, None)  # type: ignore[arg-type]
        if future is None:
            notes.append(f"a response to no request of the server's (id {_quote(msg_id)})")
            return None
        if "error" in incoming.data:
            result_type = types.ResponseErrorMessage
        try:
            return structure(self._converter, incoming.data, result_type or JsonRPCResponseMessage)
        except MessageError as error:
            self._request_futures.pop(msg_id, None)  # type: ignore[arg-type]
            if not future.done():
                future.set_exception(JsonRpcInternalError(f"malformed response: {error.message}"))
            notes.append(f"the client's response {_quote(msg_id)} is malformed: {error.message}")
            return None

    def _refuse(self, error: MessageError, notes: list[str]) -> None:
        notes.append(error.message)
        who = f" request {_quote(error.msg_id)}" if error.msg_id is not None else ""
        logger.warning(
            "refused%s (%d): %s",
            who,
            error.code,
            "; ".join(notes),
            extra={"rate_limit_kind": f"refused ({error.code})"},
        )
        # JSON-RPC: a request is answered under its id; a message whose id cannot be read, if
        # it is answered at all (parse error, invalid request), under null.
        if error.msg_id is not None or error.code in (PARSE_ERROR, INVALID_REQUEST):
            response_error = types.ResponseError(code=error.code, message=error.message)
            self._send_response(error.msg_id, error=response_error)  # type: ignore[arg-type]

    # -- handling, with exactly one answer per request ----------------------------------------

    def _handle_request(self, msg_id: Any, method_name: str, params: Any) -> None:
        self._request_methods[msg_id] = method_name
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

    def _handle_notification(self, method_name: str, params: Any) -> None:
        if method_name == types.CANCEL_REQUEST:
            self._handle_cancel_notification(params.id)
            return
        self._execute_handler(
            msg_id=str(uuid.uuid4()),
            handler=self._get_handler(method_name),
            args=(params,),
            callback=partial(self._log_notification_failure, method=method_name),
        )

    def _execute_handler(
        self,
        msg_id: Any,
        handler: Any,
        callback: Any,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        # pygls forgets the futures of requests it answers, not those of notifications and
        # commands' inner tasks: forget the finished ones now and then, or a flood piles up.
        if len(self._request_futures) > _FUTURES_BEFORE_PRUNING:
            for key, future in list(self._request_futures.items()):
                if future.done():
                    del self._request_futures[key]
        super()._execute_handler(msg_id, handler, callback, args, kwargs)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        future = self._request_futures.pop(msg_id, None)
        if future is None:
            logger.debug("cancel for %s, already answered", _quote(msg_id))  # normal: a race
            return
        future.cancel()

    def _send_handler_result(self, future: Any, *, msg_id: Any) -> None:
        self._request_futures.pop(msg_id, None)
        method = self._request_methods.pop(msg_id, "a request")
        if future.cancelled():
            cancelled = JsonRpcRequestCancelled(f"request {_quote(msg_id)} was cancelled")
            self._send_response(msg_id, error=cancelled.to_response_error())
            return
        failure = future.exception()
        if failure is None:
            self._send_response(msg_id, result=future.result())
            return
        if isinstance(failure, JsonRpcException):
            logger.info("%s answered with %d: %s", method, failure.code, failure.message[:200])
            data = failure.data
            if isinstance(data, dict) and "traceback" in data:
                data = None
            error = types.ResponseError(code=failure.code, message=failure.message, data=data)
        else:
            logger.warning("%s failed", method, exc_info=failure)
            message = f"internal error: {type(failure).__name__}: {failure}"[:200]
            error = types.ResponseError(code=INTERNAL_ERROR, message=message)
        self._send_response(msg_id, error=error)

    def _log_notification_failure(self, future: Any, *, method: str) -> None:
        if future.cancelled():
            return
        failure = future.exception()
        if failure is not None:
            logger.warning("%s handler failed", method, exc_info=failure)

    def _send_data(self, data: Any) -> None:
        """pygls's, except that a result that cannot be serialised still gets an answer (an
        error), NaN is refused (not JSON), and bodies are logged at DEBUG only."""
        if not data:
            return
        if self.writer is None:
            logger.error("no transport to send a message on")
            return
        try:
            body = json.dumps(data, default=self._serialize_message, allow_nan=False)
        except (TypeError, ValueError, AttributeError) as error:
            msg_id = getattr(data, "id", None)
            logger.warning("a message could not be serialised: %s", type(error).__name__)
            if msg_id is not None and not isinstance(data, types.ResponseErrorMessage):
                failed = types.ResponseError(code=INTERNAL_ERROR, message="unserialisable result")
                self._send_data(types.ResponseErrorMessage(id=msg_id, error=failed))
            return
        logger.debug("sending %s", body)
        header = (
            f"Content-Length: {len(body)}\r\n"
            f"Content-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n"
        )
        self.writer.write((header + body).encode(self.CHARSET))

    # -- documents ---------------------------------------------------------------------------

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(
        self, params: types.DidOpenTextDocumentParams
    ) -> Generator[Any, Any, None]:
        self._set_aside.pop(params.text_document.uri, None)
        yield from super().lsp_text_document__did_open(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(
        self, params: types.DidCloseTextDocumentParams
    ) -> Generator[Any, Any, None]:
        if self._set_aside.pop(params.text_document.uri, None) is not None:
            return  # already closed for the features when it was set aside
        yield from super().lsp_text_document__did_close(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(
        self, params: types.DidChangeTextDocumentParams
    ) -> Generator[Any, Any, None]:
        """Applies all of a didChange's edits, or none (pygls applies each as it can: a
        reversed range garbles the text, an out-of-range one is clamped)."""
        uri = params.text_document.uri
        document = self.workspace.text_documents.get(unquote(uri))
        if document is None:
            if uri in self._set_aside:
                yield from self._take_back(params)
            else:
                logger.info("didChange for a document that is not open: ignored")
            return
        try:
            text = apply_changes(document.source, params.content_changes, document.position_codec)
        except InvalidChangeError as error:
            logger.warning(
                "didChange refused (%s); the document is set aside until the editor sends its"
                " whole text (reopening it does)",
                error,
            )
            self._set_aside[uri] = document.language_id or ""
            self.workspace.remove_text_document(uri)
            closed = types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri))
            yield from self._user_handler(types.TEXT_DOCUMENT_DID_CLOSE, closed)
            return
        document.apply_change(types.TextDocumentContentChangeWholeDocument(text=text))
        document.version = params.text_document.version
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    def _take_back(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        """A change to a set-aside document: open it again if the change gives its whole text."""
        uri = params.text_document.uri
        changes = from_last_whole_text(params.content_changes)
        if changes is None:
            logger.debug("change to a set-aside document: ignored")
            return
        try:
            text = apply_changes("", changes, self.workspace.position_codec)
        except InvalidChangeError as error:
            logger.warning("didChange refused (%s); the document stays set aside", error)
            return
        item = types.TextDocumentItem(
            uri=uri,
            language_id=self._set_aside.pop(uri),
            version=params.text_document.version,
            text=text,
        )
        self.workspace.put_text_document(item)
        logger.info("a set-aside document has its whole text again")
        opened = types.DidOpenTextDocumentParams(text_document=item)
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_OPEN, opened)

    def _user_handler(self, method: str, params: Any) -> Generator[Any, Any, None]:
        handler = self.fm.features.get(method)
        if handler is not None:
            yield handler, (params,), None


def _language_id_as_text(params: Any, notes: list[str]) -> None:
    """didOpen cannot be answered, so a languageId that is not a string is taken as "" (no
    language: completions use indentation rules) rather than losing the document."""
    item = params.get("textDocument") if isinstance(params, dict) else None
    if isinstance(item, dict) and not isinstance(item.get("languageId", ""), str):
        item["languageId"] = ""
        notes.append('didOpen: a languageId that is not a string, taken as ""')


def _without_fields(data: dict[str, Any], paths: list[str], under: str) -> dict[str, Any] | None:
    """A copy of `data` without the object members at `paths` (for "a.b[2].c", the whole member
    "b" that holds the bad item); None unless every path is below `under`."""
    if not paths or not all(path.startswith(under) for path in paths):
        return None
    copy = copy_module.deepcopy(data)
    for path in paths:
        *parents, last = path.split("[", 1)[0].split(".")
        node: Any = copy
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return copy
