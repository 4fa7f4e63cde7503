"""textDocument/inlineCompletion (LSP 3.18), backed by serving's Complete RPC."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
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
from lsp_server.timing import FRESH_LINE, place_kind, wait_before_asking, worth_going_on
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
    server.document_listeners.append(lambda uri: _keystroke(server, uri))

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

        automatic = (
            params.context is not None
            and params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        )
        kind = place_kind(context.line_before)
        if automatic:
            # The pause after this keystroke is measured when the next one comes.
            ls.open_pause[uri] = (kind, ls.keystroke_at.get(uri, time.monotonic()))

        previous: InFlight | None = ls.inflight.get(uri)
        # A block on screen that is still streaming knows more than type-ahead's copy of it.
        streaming = previous is not None and previous.shown and not previous.call.done()
        hit = None if streaming else ls.typeahead.lookup(uri, context.offset, context.prefix)
        if hit is not None:
            ls.token_usage.shown(hit.suggestion_id, hit.tokens)
            return _items(params.position, hit.suggestion_id, hit.remaining)

        if previous is not None and not previous.call.done():
            typed = typed_since(previous.offset, previous.anchor, context.offset, context.prefix)
            if previous.reusable and typed is not None:
                # The user only typed on: the generation in flight may still fit. Let it go on
                # (no tokens thrown away) and answer from it while it agrees with the typing.
                answer = await previous.answer_after(typed)
                if answer is not None:
                    ls.reused_count += 1
                    text, tokens = answer
                    previous.showing(len(typed) + len(text))
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
        wait_s = _wait_before_asking(ls, uri, kind, multi, automatic)
        flight = _start(ls, uri, request, context.offset, context.prefix, started, wait_s)
        flight.document_length = len(document.source)
        flight.suffix_head = context.suffix[:_SUFFIX_HEAD_CHARS]
        flight.stream = multi and settings.stream_first_line
        flight.kind, flight.automatic = kind, automatic
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
        ls.answer_times.record(multi, time.monotonic() - flight.asked_at)
        if not flight.call.done():
            # The block goes on generating: the client is told as lines come (where it takes
            # refreshes), and the next request gets them; unless its next line would likely
            # come after the user's next keystroke: then this line is the suggestion.
            flight.showing(len(text))
            flight.first_line_s = time.perf_counter() - started
            ls.early_first_lines += 1
            if not _next_line_in_time(ls, uri, flight):
                flight.stop()
        _show(ls, uri, language, context, flight.suggestion_id, text, tokens, started)
        return _items(params.position, flight.suggestion_id, text)


def _keystroke(ls: QuillLanguageServer, uri: str) -> None:
    now = time.monotonic()
    opened = ls.open_pause.pop(uri, None)
    if opened is not None:
        kind, since = opened
        ls.pauses.record(kind, now - since)  # the pause an automatic request's answer had
    ls.keystroke_at[uri] = now
    _drop_if_stale(ls, uri)


def _wait_before_asking(
    ls: QuillLanguageServer, uri: str, kind: str, multi: bool, automatic: bool
) -> float:
    """Seconds a new request waits before it asks serving (a keystroke meanwhile drops it)."""
    settings = ls.settings
    wait_s = settings.debounce_ms / 1e3
    fixed = wait_s + (settings.multi_line_delay_ms / 1e3 if multi else 0.0)
    if not automatic:
        return fixed
    now = time.monotonic()
    keystroke = ls.keystroke_at.get(uri, now)
    need = ls.answer_times.typical(multi) if settings.adaptive_timing else None
    pauses = ls.pauses.samples(kind) if need is not None else None
    if need is None or pauses is None:
        return fixed  # not enough learnt yet
    elapsed = now - keystroke + wait_s
    extra = wait_before_asking(pauses, elapsed, need, settings.min_chance_in_time)
    if extra > 0:
        ls.held_back += 1
    logger.debug(
        "%s %s request %.2f s into a pause; answer takes %.2f s; waits %.2f s more",
        kind,
        "multi-line" if multi else "single-line",
        elapsed,
        need,
        extra,
    )
    return wait_s + extra


def _next_line_in_time(ls: QuillLanguageServer, uri: str, flight: InFlight) -> bool:
    """Whether a block on screen should go on to its next line: likely done before the user's
    next keystroke, at the pace of its lines so far (lsp_server/timing.py)."""
    settings = ls.settings
    pauses = ls.pauses.samples(flight.kind) if flight.automatic else None
    if not settings.adaptive_timing or pauses is None:
        return True
    now = time.monotonic()
    lines = sum(1 for line in flight.text.split("\n") if line.strip())
    per_line = (now - flight.asked_at) / max(1, lines)
    elapsed = now - ls.keystroke_at.get(uri, now)
    return worth_going_on(pauses, elapsed, per_line, settings.min_chance_in_time)


def _drop_if_stale(ls: QuillLanguageServer, uri: str) -> None:
    """A keystroke reached the document: cancel its serving call at once (through to an engine
    abort) if its suggestion no longer fits, instead of generating on until the editor's next
    request, which comes only after the editor's debounce, when the typing pauses."""
    flight: InFlight | None = ls.inflight.get(uri)
    if flight is None or flight.call.done():
        return
    document = ls.workspace.text_documents.get(uri)
    typed = flight.typed_in(document.source) if document is not None else None
    # Not yet asked (a block waiting for a pause): nothing spent; the next request asks afresh.
    if flight.asked and typed is not None and flight.agrees_with(typed):
        return
    flight.call.cancel()
    ls.superseded_count += 1
    ls.cancelled_on_change += 1


def _start(
    ls: QuillLanguageServer,
    uri: str,
    request: pb.CompleteRequest,
    offset: int,
    prefix: str,
    started: float,
    wait_s: float,
) -> InFlight:
    settings = ls.settings
    flight: InFlight

    async def ask_serving() -> Completion | None:
        if wait_s:
            await asyncio.sleep(wait_s)
        flight.asked = True
        flight.asked_at = time.monotonic()
        return await ls.serving_client().complete(
            request, settings.request_timeout_s, on_delta=flight.on_delta
        )

    def grew() -> None:
        if ls.inflight.get(uri) is not flight:
            return
        if _next_line_in_time(ls, uri, flight):
            ls.refresh_inline_completion(uri)
        else:
            flight.stop()

    flight = InFlight(
        asyncio.ensure_future(ask_serving()),
        offset,
        prefix[-ANCHOR_CHARS:],
        single_line=request.mode == pb.COMPLETION_MODE_SINGLE_LINE,
        on_grow=grew,
    )
    ls.inflight[uri] = flight

    def settle(call: asyncio.Future[Completion | None]) -> None:
        if ls.inflight.get(uri) is flight:
            del ls.inflight[uri]
        ls.completion_log.append(
            CompletionRecord(
                suggestion_id=flight.suggestion_id,
                multi_line=not flight.single_line,
                tokens=flight.tokens,
                outcome=_outcome(flight),
                seconds=time.perf_counter() - started,
                place=flight.kind,
            )
        )
        text = flight.final_text()
        if flight.shown and text:
            # The whole block, after its first line went out early: type-ahead answers from it.
            ls.typeahead.extend(uri, flight.suggestion_id, flight.offset, text, flight.tokens)
            ls.telemetry.extended(flight.suggestion_id, text)
            if flight.first_line_s:
                ls.streamed_blocks.append((flight.first_line_s, time.perf_counter() - started))
            if len(text.rstrip()) > flight.shown_upto:
                ls.refresh_inline_completion(uri)  # the last lines came with the end

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
# Characters after the cursor kept to recognise "typed at the cursor" in a changed document.
_SUFFIX_HEAD_CHARS = 64


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
    # True once the debounce is over and serving was asked (tokens are being spent), and when.
    asked: bool = False
    asked_at: float = 0.0
    # True once part of it went to the editor: it keeps running for the follow-up request.
    shown: bool = False
    text: str = ""  # streamed so far, relative to the cursor at `offset`
    suggestion_id: str = ""
    tokens: int = 0  # engine tokens generated so far
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    first_line_s: float = 0.0  # when the first line went out early
    # Called when a streamed block that is on screen gains lines.
    on_grow: Callable[[], None] | None = None
    shown_upto: int = 0  # characters from `offset` that the editor was shown
    # Where the request was made (lsp_server.timing's kinds) and whether as the user typed.
    kind: str = FRESH_LINE
    automatic: bool = False
    # Stopped at a line's end because the next line would likely come too late.
    stopped: bool = False
    # The document's length and the text just after the cursor when the call was made.
    document_length: int = 0
    suffix_head: str = ""

    def typed_in(self, source: str) -> str | None:
        """What was typed at this call's cursor to make the document `source`; None if it
        changed any other way."""
        cursor = self.offset + len(source) - self.document_length
        before = source[max(0, self.offset - len(self.anchor)) : max(cursor, self.offset)]
        typed = typed_since(self.offset, self.anchor, cursor, before)
        if typed is None or not source.startswith(self.suffix_head, cursor):
            return None
        return typed

    def agrees_with(self, typed: str) -> bool:
        """Whether what this call wrote so far can still be what the user is typing."""
        if self.text.startswith(typed):
            return True
        return typed.startswith(self.text) and len(typed) - len(self.text) <= _MAX_REUSE_CHARS

    def stop(self) -> None:
        """End the generation at the line just finished (the user will likely type before
        another is done): its lines so far are the suggestion, not half a line thrown away."""
        self.stopped = True
        self.call.cancel()

    def showing(self, upto: int) -> None:
        """The editor was handed this call's text up to `upto` characters from its cursor."""
        self.shown_upto = max(self.shown_upto, upto)
        if self.stream:
            self.shown = True

    @property
    def reusable(self) -> bool:
        return self.asked and (self.single_line or self.stream)

    def on_delta(self, delta: pb.TextDelta) -> None:
        self.text += delta.text
        self.suggestion_id = delta.suggestion_id or self.suggestion_id
        self.tokens = max(self.tokens, delta.completion_tokens)
        self.changed.set()
        if self.shown and self.on_grow is not None and delta.text.strip():
            self.on_grow()

    def final_text(self) -> str:
        """The finished call's suggestion: its completion, or its lines so far when it was
        stopped at a line's end; "" if it failed, was cancelled or is running."""
        completion = self.result()
        if completion is not None:
            return completion.text
        return self.text.rstrip() if self.stopped else ""

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
                final = self.final_text()
                if not final.startswith(typed):
                    return None
                rest = final[len(typed) :]
                return (rest, self.tokens) if rest else None
            if self.text.startswith(typed):
                rest = self.text[len(typed) :]
                if self.stream and rest.strip() and rest.endswith("\n"):
                    return rest.rstrip(), self.tokens  # whole lines beyond the typing
            elif not self.agrees_with(typed):
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
    # ok, empty, stopped (a block ended at a line end), cancelled, dropped (cancelled before
    # serving was asked: no tokens), error
    outcome: str
    seconds: float
    place: str  # lsp_server.timing's kind of place


def _outcome(flight: InFlight) -> str:
    call = flight.call
    if flight.stopped:
        return "stopped"
    if call.cancelled():
        return "cancelled" if flight.asked else "dropped"
    if call.exception() is not None:
        return "error"
    completion = flight.result()
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
