"""Where a document changed, from its text before and after, and how a range follows the change.

Editors send changes as ranges (incremental sync) or whole texts; by the time a feature hears of
them pygls has applied them. Comparing the text before with the text after gives one span that
covers everything that changed — exact for a keystroke, a paste or an accepted suggestion, and a
covering span for several changes at once (multiple cursors) — whatever the client sent.
"""

from __future__ import annotations

from dataclasses import dataclass

# Characters compared per step while looking for the first difference: slices this long are
# compared in C, so a 2 MB document costs a few hundred steps.
_BLOCK = 4096


@dataclass(frozen=True)
class EditSpan:
    """The text `old[start:old_end]` became `new[start:new_end]`; everything else is equal."""

    start: int
    old_end: int
    new_end: int

    @property
    def delta(self) -> int:
        return (self.new_end - self.start) - (self.old_end - self.start)


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    low = 0
    while low < limit and a[low : low + _BLOCK] == b[low : low + _BLOCK]:
        low += _BLOCK
    high = min(limit, low + _BLOCK)
    low = min(low, limit)
    while low < high:  # the first difference lies in [low, high]
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str, limit: int) -> int:
    size = 0
    while size < limit:
        step = min(_BLOCK, limit - size)
        if a[len(a) - size - step : len(a) - size] != b[len(b) - size - step : len(b) - size]:
            break
        size += step
    high = min(limit, size + _BLOCK)
    while size < high:
        middle = (size + high + 1) // 2
        if a[len(a) - middle : len(a) - size] == b[len(b) - middle : len(b) - size]:
            size = middle
        else:
            high = middle - 1
    return size


def change_span(old: str, new: str) -> EditSpan | None:
    """The span that changed between `old` and `new`, or None when they are equal.

    Between equal characters (typing "a" after "a") the change is placed as late as possible.
    """
    if old == new:
        return None
    start = _common_prefix(old, new)
    end = _common_suffix(old, new, min(len(old), len(new)) - start)
    return EditSpan(start, len(old) - end, len(new) - end)


def follow(start: int, end: int, span: EditSpan) -> tuple[int, int]:
    """The range [start, end) of the old text, in the new text.

    Text inserted where the range begins or ends stays outside it; text replacing part of the
    range joins it (a range measured later sees what replaced its characters).
    """
    if span.old_end <= start:
        return start + span.delta, end + span.delta
    if span.start >= end:
        return start, end
    if start == end:  # an empty range inside replaced text: at the replacement's start
        return span.start, span.start
    return min(start, span.start), max(end, span.old_end) + span.delta
