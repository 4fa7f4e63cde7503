"""The serving call in flight for a document: what it has streamed, whether a newer request can
reuse it, and how it ended.

A request for inline completion starts a call (`InFlight`); the next request for the same
document either answers from it (the user typed what it is writing), or supersedes it (its RPC
is cancelled, which aborts the engine request). `CompletionRecord` is what `quill.stats` keeps
of each finished call for the waste analysis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lsp_server.completion.timing import FRESH_LINE
from lsp_server.completion.typeahead import typed_since
from lsp_server.serving_client import Completion
from quill.attribution import context_label
from quill.v1 import quill_pb2 as pb

# A generation that has not caught up with this much of the user's typing is a new context, not
# type-ahead: waiting for it would keep the user waiting.
_MAX_REUSE_CHARS = 16
# Characters after the cursor kept to recognise "typed at the cursor" in a changed document.
SUFFIX_HEAD_CHARS = 64


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
    # Where the request was made (timing's kinds of place) and whether as the user typed.
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
                first = first_line(self.text)
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
    place: str  # lsp_server.completion.timing's kind of place
    # The context that went into its prompt (quill/attribution.py's label; "" if it failed).
    context: str = ""


def context_of(flight: InFlight) -> str:
    """The finished call's context label, from what serving said went into the prompt."""
    completion = flight.result()
    if completion is None:
        return ""
    return context_label(completion.done.context_sources, completion.done.tool_calls)


def outcome_of(flight: InFlight) -> str:
    call = flight.call
    if flight.stopped:
        return "stopped"
    if call.cancelled():
        return "cancelled" if flight.asked else "dropped"
    if call.exception() is not None:
        return "error"
    completion = flight.result()
    return "ok" if completion is not None and completion.text else "empty"


def first_line(text: str) -> str | None:
    """The text up to the end of its first line with code, once that line is complete."""
    code = len(text) - len(text.lstrip())
    newline = text.find("\n", code)
    if code == len(text) or newline < 0:
        return None
    return text[:newline].rstrip()
