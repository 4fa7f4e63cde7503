"""How much of an accepted suggestion is still in the document, checked at fixed delays.

After the first acceptance (whole or partial) of a suggestion, its inserted text is followed as a
range of the document through every later edit (lsp_server/edits.py): edits before it move it,
edits inside it change what it holds, text typed at its edges stays outside. At each check delay
(`retentionChecksS`, default 30 s, 2 min, 10 min) the measure is

    retained = LCS(accepted text, text of the range now)

the length of the longest common subsequence: the accepted characters still there, in order.
Kept text counts fully, text typed inside it costs nothing, each deleted or replaced character
costs one. Closing the document (or the editor) before a check answers every remaining check
with the measure on the last text known. Only counts leave this module, never text.

Time comes from an injected clock and nothing here sleeps: `due(now)` returns the checks whose
time has come, so tests run the schedule deterministically and the feature
(lsp_server/features/retention.py) drives it with a timer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lsp_server.edits import change_span, follow
from quill.retention_checks import DEFAULT_CHECKS_S
from quill.v1 import quill_pb2 as pb

Origin = pb.SuggestionOrigin

# Offers (items returned to the editor) remembered for an acceptance to name.
_MAX_OFFERS = 512
# Suggestions followed at once; beyond it the oldest is settled early with what is known.
MAX_TRACKED = 256
# Where the editor put the text, if not where it was offered: searched this far around it.
_SEARCH_CHARS = 2000
# A range grown past this (pasted into) is measured on its first characters only.
_MAX_RANGE_CHARS = 50_000


def retained_chars(accepted: str, current: str) -> int:
    """Length of the longest common subsequence of `accepted` and `current`.

    Bit-parallel (Hyyrö 2004): one pass over `current` with `len(accepted)`-bit integers.
    """
    if not accepted or not current:
        return 0
    positions: dict[str, int] = {}
    for index, char in enumerate(accepted):
        positions[char] = positions.get(char, 0) | (1 << index)
    mask = (1 << len(accepted)) - 1
    row = mask
    for char in current:
        matches = row & positions.get(char, 0)
        row = ((row + matches) | (row - matches)) & mask
    return len(accepted) - row.bit_count()


@dataclass(frozen=True)
class RetentionCheck:
    """One check's result: what travels to serving (counts only)."""

    suggestion_id: str
    after_s: int
    retained: int
    accepted: int
    origin: Origin


@dataclass
class _Offer:
    uri: str
    offset: int  # where the item's text starts in the document
    text: str
    origin: Origin


@dataclass
class _Tracked:
    suggestion_id: str
    uri: str
    accepted: str
    start: int
    end: int
    origin: Origin
    accepted_at: float
    checks_left: list[int]
    # The editor has not inserted the text yet (the accept came before its change).
    pending: bool = False


@dataclass
class RetentionTracker:
    clock: Callable[[], float] = time.monotonic
    checks_s: tuple[int, ...] = DEFAULT_CHECKS_S
    _offers: OrderedDict[str, _Offer] = field(default_factory=OrderedDict)
    _tracked: dict[str, _Tracked] = field(default_factory=dict)
    # The last text seen of each document something is followed in.
    _texts: dict[str, str] = field(default_factory=dict)
    # Checks settled before their time (to make room), for the next `due`.
    _early: list[RetentionCheck] = field(default_factory=list)
    reported: int = 0

    def offered(self, suggestion_id: str, uri: str, offset: int, text: str, origin: Origin) -> None:
        """An item went to the editor: `text` at character `offset` of `uri`."""
        self._offers[suggestion_id] = _Offer(uri, offset, text, origin)
        self._offers.move_to_end(suggestion_id)
        while len(self._offers) > _MAX_OFFERS:
            self._offers.popitem(last=False)

    def origin_of(self, suggestion_id: str) -> Origin:
        offer = self._offers.get(suggestion_id)
        return offer.origin if offer is not None else pb.SUGGESTION_ORIGIN_UNSPECIFIED

    def accepted(
        self, suggestion_id: str, length: int | None, read: Callable[[str], str | None]
    ) -> None:
        """The first `length` characters of the last item offered for `suggestion_id` went into
        the document (None: all of it); `read(uri)` gives a document's text now (None: closed).

        Starts following the text at the first acceptance, or grows what is followed (a partial
        accept going on, a full accept after partial ones).
        """
        offer = self._offers.get(suggestion_id)
        if offer is None or not self.checks_s:
            return
        chars = offer.text if length is None else offer.text[: max(0, length)]
        tracked = self._tracked.get(suggestion_id)
        if tracked is not None:
            self._grow(tracked, offer, chars)
            return
        document = read(offer.uri)
        if not chars or document is None:
            return
        self.document_changed(offer.uri, document)  # others there catch up first
        self._texts[offer.uri] = document
        start, found = _locate(document, offer.offset, chars)
        self._tracked[suggestion_id] = _Tracked(
            suggestion_id,
            offer.uri,
            chars,
            start,
            start + len(chars) if found else start,
            offer.origin,
            self.clock(),
            list(self.checks_s),
            pending=not found,
        )
        if len(self._tracked) > MAX_TRACKED:
            self._early += self._settle([next(iter(self._tracked.values()))])

    def _grow(self, tracked: _Tracked, offer: _Offer, chars: str) -> None:
        if offer.offset == tracked.start + len(tracked.accepted) and not tracked.pending:
            # The rest of the suggestion, offered after its beginning was accepted.
            tracked.accepted += chars
            tracked.end += len(chars)
        elif len(chars) > len(tracked.accepted) and chars.startswith(tracked.accepted):
            # The same item, accepted further (partial accepts, then perhaps all of it).
            tracked.end += len(chars) - len(tracked.accepted)
            tracked.accepted = chars

    def document_changed(self, uri: str, text: str) -> None:
        """`uri` now reads `text`: followed ranges move with the change."""
        old = self._texts.get(uri)
        if old is None:
            return
        self._texts[uri] = text
        span = change_span(old, text)
        if span is None:
            return
        for tracked in self._tracked.values():
            if tracked.uri != uri:
                continue
            if tracked.pending:  # is the text there now, near where it was offered?
                start, found = _locate(text, tracked.start, tracked.accepted)
                if found:
                    tracked.start, tracked.end = start, start + len(tracked.accepted)
                    tracked.pending = False
                    continue
            tracked.start, tracked.end = follow(tracked.start, tracked.end, span)

    def next_due(self) -> float | None:
        """When the earliest remaining check is due (on the clock), None without any."""
        if self._early:
            return self.clock()
        times = [t.accepted_at + t.checks_left[0] for t in self._tracked.values()]
        return min(times, default=None)

    def due(self, now: float | None = None) -> list[RetentionCheck]:
        """The checks whose time has come, measured on the documents as they are."""
        now = self.clock() if now is None else now
        checks, self._early = self._early, []
        for tracked in list(self._tracked.values()):
            while tracked.checks_left and tracked.accepted_at + tracked.checks_left[0] <= now:
                checks.append(self._check(tracked, tracked.checks_left.pop(0)))
            if not tracked.checks_left:
                self._forget(tracked)
        return checks

    def closed(self, uri: str) -> list[RetentionCheck]:
        """`uri` closed: every remaining check of its suggestions, on its last text."""
        checks = self._settle([t for t in self._tracked.values() if t.uri == uri])
        self._texts.pop(uri, None)
        return checks

    def finish(self) -> list[RetentionCheck]:
        """The editor is going away: every remaining check, on the last texts."""
        checks, self._early = self._early, []
        checks += self._settle(list(self._tracked.values()))
        self._texts.clear()
        return checks

    def _settle(self, tracked: Iterable[_Tracked]) -> list[RetentionCheck]:
        checks: list[RetentionCheck] = []
        for item in tracked:
            checks += [self._check(item, after) for after in item.checks_left]
            self._forget(item)
        return checks

    def _check(self, tracked: _Tracked, after_s: int) -> RetentionCheck:
        text = self._texts.get(tracked.uri, "")
        region = "" if tracked.pending else text[tracked.start : tracked.end]
        retained = retained_chars(tracked.accepted, region[:_MAX_RANGE_CHARS])
        self.reported += 1
        return RetentionCheck(
            tracked.suggestion_id, after_s, retained, len(tracked.accepted), tracked.origin
        )

    def _forget(self, tracked: _Tracked) -> None:
        self._tracked.pop(tracked.suggestion_id, None)
        if not any(t.uri == tracked.uri for t in self._tracked.values()):
            self._texts.pop(tracked.uri, None)


def _locate(document: str, offset: int, chars: str) -> tuple[int, bool]:
    """Where the editor put `chars` offered at `offset`: (start, True), or (offset, False) while
    it is not in the document yet."""
    if document.startswith(chars, offset):
        return offset, True
    low = max(0, offset - _SEARCH_CHARS)
    high = min(len(document), offset + len(chars) + _SEARCH_CHARS)
    before = document.rfind(chars, low, offset + len(chars) - 1)
    after = document.find(chars, offset + 1, high)
    found = [i for i in (before, after) if i >= 0]
    if not found:
        return min(offset, len(document)), False
    return min(found, key=lambda i: abs(i - offset)), True


def retention_event(check: RetentionCheck) -> pb.SuggestionEvent:
    return pb.SuggestionEvent(
        suggestion_id=check.suggestion_id,
        kind=pb.SUGGESTION_EVENT_KIND_RETAINED,
        chars=check.retained,
        origin=check.origin,
        retained_after_s=check.after_s,
    )
