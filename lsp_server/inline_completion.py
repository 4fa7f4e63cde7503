"""textDocument/inlineCompletion (LSP 3.18), backed by serving's Complete RPC."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.acceptance import ACCEPT_COMMAND
from lsp_server.documents import (
    CursorContext,
    InvalidPositionError,
    UnusableDocumentError,
    cursor_context,
)
from lsp_server.server import QuillLanguageServer
from lsp_server.serving_client import Completion
from lsp_server.trigger import choose_mode
from lsp_server.typeahead import ANCHOR_CHARS, typed_since
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

_EMPTY = types.InlineCompletionList(items=[])


def workspace_id(ls: QuillLanguageServer) -> str:
    """A stable opaque id of the workspace root (serving never sees the path itself)."""
    root = ls.workspace.root_uri or ""
    return hashlib.sha256(root.encode()).hexdigest()[:16]


def relative_path(ls: QuillLanguageServer, uri: str) -> str:
    path = unquote(urlparse(uri).path)
    root = unquote(urlparse(ls.workspace.root_uri or "").path)
    if root and path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1 :]
    return path.rsplit("/", 1)[-1]


def register(server: QuillLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: QuillLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        uri = params.text_document.uri
        document = ls.workspace.text_documents.get(uri)
        if document is None:
            logger.info("inline completion for a document that is not open: %s", uri)
            return _EMPTY
        settings = ls.settings
        try:
            context = cursor_context(
                document,
                params.position,
                settings.max_document_bytes,
                settings.max_prefix_chars,
                settings.max_suffix_chars,
            )
        except InvalidPositionError as error:
            raise JsonRpcInvalidParams(str(error)) from error
        except UnusableDocumentError as error:
            logger.info("no completion for %s: %s", uri, error)
            return _EMPTY
        language = document.language_id or ""
        started = time.perf_counter()
        number = ls.latest_completion.get(uri, 0) + 1
        ls.latest_completion[uri] = number

        hit = ls.typeahead.lookup(uri, context.offset, context.prefix)
        if hit is not None:
            ls.token_usage.shown(hit.suggestion_id, hit.tokens)
            return _items(params.position, hit.suggestion_id, hit.remaining)

        previous: InFlight | None = ls.inflight.get(uri)
        if previous is not None and not previous.call.done():
            typed = typed_since(previous.offset, previous.anchor, context.offset, context.prefix)
            if previous.reusable and typed is not None:
                # The user only typed on: the generation in flight may still fit. Let it go on
                # (no tokens thrown away) and answer from it while it agrees with the typing.
                answer = await previous.answer_after(typed)
                if answer is not None:
                    ls.reused_count += 1
                    text, tokens = answer
                    _show(ls, uri, language, context, previous.suggestion_id, text, tokens, started)
                    return _items(params.position, previous.suggestion_id, text)
                if ls.latest_completion.get(uri) != number:
                    return _EMPTY  # a newer request came meanwhile: it decides
            if not previous.call.done():
                # It no longer fits what is on screen: its RPC is cancelled, which aborts the
                # engine request, and it answers with nothing.
                previous.call.cancel()
                ls.superseded_count += 1

        request = pb.CompleteRequest(
            workspace_id=workspace_id(ls),
            file_path=relative_path(ls, uri),
            language=language,
            prefix=context.prefix,
            suffix=context.suffix,
            cursor=pb.Position(line=params.position.line, character=params.position.character),
            mode=choose_mode(settings.completion_mode, language, context),
            limits=pb.CompletionLimits(max_tokens=settings.max_tokens),
            context=pb.ContextOptions(
                disable_retrieval=not settings.retrieval,
                retrieval_token_budget=settings.retrieval_token_budget,
            ),
        )
        multi = request.mode == pb.COMPLETION_MODE_MULTI_LINE
        flight = _start(ls, uri, request, context.offset, context.prefix, started)
        flight.stream = multi and settings.stream_first_line
        try:
            answer = await flight.first_answer()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                if not flight.shown:
                    flight.call.cancel()
                raise  # the client cancelled this request itself ($/cancelRequest)
            return _EMPTY  # superseded
        if answer is None:
            return _EMPTY
        text, tokens = answer
        if not flight.call.done():
            flight.shown = True  # the block goes on generating; the next request gets it
            flight.first_line_s = time.perf_counter() - started
            ls.early_first_lines += 1
        _show(ls, uri, language, context, flight.suggestion_id, text, tokens, started)
        return _items(params.position, flight.suggestion_id, text)


def _start(
    ls: QuillLanguageServer,
    uri: str,
    request: pb.CompleteRequest,
    offset: int,
    prefix: str,
    started: float,
) -> InFlight:
    settings = ls.settings
    flight: InFlight

    wait_ms = settings.debounce_ms
    if request.mode == pb.COMPLETION_MODE_MULTI_LINE:
        # A block costs many tokens: ask for one only once the user has paused a little longer.
        wait_ms += settings.multi_line_delay_ms

    async def ask_serving() -> Completion | None:
        if wait_ms:
            await asyncio.sleep(wait_ms / 1e3)
        flight.asked = True
        return await ls.serving_client().complete(
            request, settings.request_timeout_s, on_delta=flight.on_delta
        )

    flight = InFlight(
        asyncio.ensure_future(ask_serving()),
        offset,
        prefix[-ANCHOR_CHARS:],
        single_line=request.mode == pb.COMPLETION_MODE_SINGLE_LINE,
    )
    ls.inflight[uri] = flight

    def settle(call: asyncio.Future[Completion | None]) -> None:
        if ls.inflight.get(uri) is flight:
            del ls.inflight[uri]
        completion = flight.result()
        ls.completion_log.append(
            CompletionRecord(
                suggestion_id=flight.suggestion_id,
                multi_line=not flight.single_line,
                tokens=flight.tokens,
                outcome=_outcome(call, completion),
                seconds=time.perf_counter() - started,
            )
        )
        if flight.shown and completion is not None and completion.text:
            # The whole block, after its first line went out early: type-ahead answers from it.
            ls.typeahead.extend(
                uri, flight.suggestion_id, flight.offset, completion.text, flight.tokens
            )
            ls.telemetry.extended(flight.suggestion_id, completion.text)
            ls.streamed_blocks.append((flight.first_line_s, time.perf_counter() - started))

    flight.call.add_done_callback(settle)
    return flight


def _show(
    ls: QuillLanguageServer,
    uri: str,
    language: str,
    context: CursorContext,
    suggestion_id: str,
    text: str,
    tokens: int,
    started: float,
) -> None:
    ls.shown_count += 1
    ls.telemetry.returned(suggestion_id, uri, text, language, time.perf_counter() - started)
    ls.typeahead.remember(uri, context.offset, context.prefix, suggestion_id, text, tokens)
    ls.token_usage.shown(suggestion_id, tokens)


# A generation that has not caught up with this much of the user's typing is a new context, not
# type-ahead: waiting for it would keep the user waiting.
_MAX_REUSE_CHARS = 16


@dataclass
class InFlight:
    """The serving call in flight for a document, where its cursor was, and what it has
    streamed so far."""

    call: asyncio.Future[Completion | None]
    offset: int
    anchor: str
    # Single-line requests are short enough to wait for; a multi-line one is reusable only
    # when it streams (a keystroke is answered from its lines as they come), else newer
    # keystrokes supersede it rather than wait seconds for the whole block.
    single_line: bool = True
    stream: bool = False
    # True once the debounce is over and serving was asked (tokens are being spent).
    asked: bool = False
    # True once part of it went to the editor: it keeps running for the follow-up request.
    shown: bool = False
    text: str = ""  # streamed so far, relative to the cursor at `offset`
    suggestion_id: str = ""
    tokens: int = 0  # engine tokens generated so far
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    first_line_s: float = 0.0  # when the first line went out early

    @property
    def reusable(self) -> bool:
        return self.asked and (self.single_line or self.stream)

    def on_delta(self, delta: pb.TextDelta) -> None:
        self.text += delta.text
        self.suggestion_id = delta.suggestion_id or self.suggestion_id
        self.tokens = max(self.tokens, delta.completion_tokens)
        self.changed.set()

    def result(self) -> Completion | None:
        """The finished call's completion; None if it failed, was cancelled or is running."""
        if not self.call.done() or self.call.cancelled() or self.call.exception() is not None:
            return None
        completion = self.call.result()
        if completion is not None:
            self.suggestion_id = completion.done.suggestion_id
            self.tokens = max(self.tokens, completion.done.completion_tokens)
        return completion

    async def first_answer(self) -> tuple[str, int] | None:
        """(text, tokens behind it) for the request that started this call: the whole
        suggestion, or — when streaming a block — its first line as soon as that is written."""
        while True:
            self.changed.clear()
            if self.call.done():
                completion = await self.call  # raises if cancelled or failed
                if completion is None or not completion.text:
                    return None
                self.result()
                return completion.text, self.tokens
            if self.stream:
                first = _first_line(self.text)
                if first is not None:
                    return first, self.tokens
            await self._next_change()

    async def answer_after(self, typed: str) -> tuple[str, int] | None:
        """What this call suggests after the user typed `typed` at its cursor, once known; None
        as soon as it contradicts the typing (or fails, or ends with nothing more)."""
        while True:
            self.changed.clear()
            if self.call.done():
                completion = self.result()
                if completion is None or not completion.text.startswith(typed):
                    return None
                rest = completion.text[len(typed) :]
                return (rest, self.tokens) if rest else None
            if self.text.startswith(typed):
                rest = self.text[len(typed) :]
                if self.stream and rest.strip() and rest.endswith("\n"):
                    return rest.rstrip(), self.tokens  # whole lines beyond the typing
            elif not typed.startswith(self.text) or len(typed) - len(self.text) > _MAX_REUSE_CHARS:
                return None
            await self._next_change()

    async def _next_change(self) -> None:
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self.changed.wait())
        waited: list[asyncio.Future[Any]] = [self.call, waiter]
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()


@dataclass(frozen=True)
class CompletionRecord:
    """What one serving call cost and how it ended, for `quill.stats` (waste analysis)."""

    suggestion_id: str
    multi_line: bool
    tokens: int  # engine tokens seen (cancelled multi-line: up to its last whole line)
    outcome: str  # ok, empty, cancelled, error
    seconds: float


def _outcome(call: asyncio.Future[Completion | None], completion: Completion | None) -> str:
    if call.cancelled():
        return "cancelled"
    if call.exception() is not None:
        return "error"
    return "ok" if completion is not None and completion.text else "empty"


def _first_line(text: str) -> str | None:
    """The text up to the end of its first line with code, once that line is complete."""
    code = len(text) - len(text.lstrip())
    newline = text.find("\n", code)
    if code == len(text) or newline < 0:
        return None
    return text[:newline].rstrip()


def _items(position: types.Position, suggestion_id: str, text: str) -> types.InlineCompletionList:
    item = types.InlineCompletionItem(
        insert_text=text,
        range=types.Range(start=position, end=position),
        command=types.Command(
            title="Accept Quill suggestion",
            command=ACCEPT_COMMAND,
            arguments=[suggestion_id, len(text)],
        ),
    )
    return types.InlineCompletionList(items=[item])
