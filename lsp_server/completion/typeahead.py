"""Serve keystrokes that follow the shown suggestion from that suggestion, without the model.

When the user types exactly what the last suggestion for a document proposed, the rest of that
suggestion is still the answer: it comes back at once, under the same suggestion id, so
acceptance is attributed to the suggestion the model made.
"""

from __future__ import annotations

from dataclasses import dataclass

# Characters of text before the cursor compared to recognise "the same place, plus typing".
ANCHOR_CHARS = 256


def typed_since(then_offset: int, then_anchor: str, offset: int, prefix: str) -> str | None:
    """What the user typed at the cursor since it was at `then_offset` with `then_anchor` (the
    text just before it) — "" at the same place — or None if the document changed any other way.

    `prefix` is (at least the tail of) the text before the cursor at `offset`.
    """
    typed_len = offset - then_offset
    if typed_len < 0 or typed_len > len(prefix):
        return None
    before = prefix[: len(prefix) - typed_len]
    if not before.endswith(then_anchor[-len(before) :] if before else ""):
        return None
    return prefix[len(prefix) - typed_len :]


@dataclass
class _Remembered:
    suggestion_id: str
    offset: int  # cursor offset in the document when the suggestion was made
    anchor: str  # the text just before that cursor
    text: str
    tokens: int  # engine tokens behind `text`


@dataclass(frozen=True)
class TypeAheadHit:
    suggestion_id: str
    remaining: str
    tokens: int


class TypeAheadCache:
    def __init__(self) -> None:
        self._by_uri: dict[str, _Remembered] = {}
        self.hits = 0

    def remember(
        self, uri: str, offset: int, prefix: str, suggestion_id: str, text: str, tokens: int = 0
    ) -> None:
        self._by_uri[uri] = _Remembered(suggestion_id, offset, prefix[-ANCHOR_CHARS:], text, tokens)

    def extend(self, uri: str, suggestion_id: str, offset: int, text: str, tokens: int) -> None:
        """The rest of a suggestion arrived (a block after its early first line; `text` is
        all of it, from the cursor at `offset`): type-ahead goes on from the whole of it, if it
        is still the document's last suggestion."""
        last = self._by_uri.get(uri)
        if last is None or last.suggestion_id != suggestion_id or last.offset < offset:
            return
        rest = text[last.offset - offset :]
        if rest.startswith(last.text):
            last.text, last.tokens = rest, tokens

    def forget(self, uri: str) -> None:
        self._by_uri.pop(uri, None)

    def __len__(self) -> int:
        return len(self._by_uri)

    def lookup(self, uri: str, offset: int, prefix: str) -> TypeAheadHit | None:
        """`prefix` is (at least the tail of) the text before the cursor at `offset`."""
        last = self._by_uri.get(uri)
        if last is None:
            return None
        typed = typed_since(last.offset, last.anchor, offset, prefix)
        if typed is None or len(typed) >= len(last.text) or not last.text.startswith(typed):
            return None
        if typed:  # else the editor asked again at the same place (a refresh, say)
            self.hits += 1
        return TypeAheadHit(last.suggestion_id, last.text[len(typed) :], last.tokens)


class TokenUsage:
    """Engine tokens behind what the editor was shown, per suggestion (the rest is waste)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._by_id: dict[str, int] = {}
        self._capacity = capacity
        self.total = 0

    def of(self, suggestion_id: str) -> int:
        return self._by_id.get(suggestion_id, 0)

    def shown(self, suggestion_id: str, tokens: int) -> None:
        before = self._by_id.get(suggestion_id, 0)
        if tokens > before:
            self.total += tokens - before
            self._by_id[suggestion_id] = tokens
            if len(self._by_id) > self._capacity:
                self._by_id.pop(next(iter(self._by_id)))
