"""When to ask serving while the user types: only when the answer is likely on screen before
the user's next keystroke.

A suggestion that arrives after the user typed on is thrown away with every token behind it.
How long that takes depends on the hardware (tens of milliseconds on a GPU, a second or more on
a loaded CPU) and on the person (a pause at a line end is longer than one between words). So
each language server learns both as it goes:

- `PauseHistory`: after a keystroke that an automatic request followed, how long until the next
  keystroke (the pause the answer had), per kind of place: a fresh line, inside a word, after
  a word.
- `AnswerTimes`: how long serving took to give something to show, per mode (a single line; a
  block's first line), from the moment it was asked. The figure used is the upper quartile,
  not the median: answers that would have been slow are the ones cancelled before they came,
  so the recorded times run short.

An automatic request then waits until the chance that the pause, as long as it has already
lasted, goes on long enough for the answer is at least `min_chance`. Where the history holds
too few pauses that long to count, the chance comes from the shape human pauses have past
their usual length, a heavy tail: a pause that has lasted t goes on past t + need with chance
t / (t + need). (The rule it replaces asked as soon as a pause outlasted every one in the
history; the user mostly typed on right after, and the answer was lost.) A block on screen
goes on to its next line by the same rule, at the pace of its lines so far; otherwise it stops
at the end of the line it finished (those lines are the suggestion) instead of being cut
mid-line by the next keystroke.
A request is never held longer than the session's longest hold (`maxHoldMs`): on a slow
serving the rule alone would wait seconds, and a user stopped that long wants a suggestion.
Until there is enough history, requests go out as before. Invoked requests (the user asked) are
never held back.

Time itself comes from a `Clock` the session owns, so tests drive it instead of racing the
machine's wall clock.
"""

from __future__ import annotations

import asyncio
import bisect
import statistics
import time
from collections import deque
from collections.abc import Iterable

# Kinds of place a request is made at. Pauses differ: people stop longest at line ends, and
# longer after a word than inside one.
FRESH_LINE = "fresh_line"
AFTER_WORD = "after_word"
IN_WORD = "in_word"

# Fewer pauses than this as long as the current one: too few to count; the heavy tail decides.
_MIN_TAIL_SAMPLES = 3
# The tail's chance reaches 1 only after forever.
_HIGHEST_CHANCE = 0.99


class Clock:
    """The time the timing policy sees: the monotonic clock, and waits on it."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def place_kind(line_before: str) -> str:
    """The kind of place a cursor with `line_before` to its left is at."""
    if not line_before.strip():
        return FRESH_LINE
    last = line_before[-1]
    return IN_WORD if last.isalnum() or last == "_" else AFTER_WORD


class _RecentTimes:
    """The last `window` durations per key (seconds)."""

    def __init__(self, window: int, min_samples: int) -> None:
        self._window = window
        self._min_samples = min_samples
        self._by_key: dict[object, deque[float]] = {}

    def record(self, key: object, seconds: float) -> None:
        self._by_key.setdefault(key, deque(maxlen=self._window)).append(seconds)

    def _enough(self, key: object) -> deque[float] | None:
        times = self._by_key.get(key)
        return times if times is not None and len(times) >= self._min_samples else None


class PauseHistory(_RecentTimes):
    """The user's recent pauses (seconds from a keystroke to the next), per kind of place."""

    def __init__(self, window: int = 64, min_samples: int = 6) -> None:
        super().__init__(window, min_samples)

    def samples(self, kind: str) -> list[float] | None:
        """This kind's pauses; all kinds' while it has too few; None while all have too few."""
        own = self._enough(kind)
        if own is not None:
            return list(own)
        every = [s for pauses in self._by_key.values() for s in pauses]
        return every if len(every) >= self._min_samples else None


class AnswerTimes(_RecentTimes):
    """Recent seconds from asking serving to something to show, per mode (multi-line or not)."""

    def __init__(self, window: int = 16, min_samples: int = 2) -> None:
        super().__init__(window, min_samples)

    def typical(self, multi_line: bool) -> float | None:
        """The upper quartile of this mode's times; a block's first line is a line, so until
        blocks have enough, single lines' stand in. None while neither has enough."""
        for mode in (multi_line, False):
            times = self._enough(mode)
            if times is not None:
                return statistics.quantiles(times, n=4, method="inclusive")[2]
        return None


def _lasting(ordered: list[float], t: float) -> int:
    """How many of the sorted pauses `ordered` are longer than t."""
    return len(ordered) - bisect.bisect_right(ordered, t)


def chance_in_time(ordered: list[float], t: float, need: float) -> float:
    """P(pause > t + need | pause > t), from the sorted pauses `ordered` while at least
    `_MIN_TAIL_SAMPLES` of them are longer than t, else from the heavy tail."""
    still = _lasting(ordered, t)
    if still >= _MIN_TAIL_SAMPLES:
        return _lasting(ordered, t + need) / still
    return t / (t + need) if t + need > 0 else 1.0


def wait_before_asking(
    pauses: Iterable[float],
    elapsed: float,
    need: float,
    min_chance: float,
    longest: float | None = None,
) -> float:
    """Seconds to wait before asking, `elapsed` seconds into a pause, for an answer that takes
    `need` seconds to show: until the first moment t (now, when a past pause would have ended,
    or where the tail's chance t / (t + need) reaches it) at which `chance_in_time` is at
    least `min_chance`; never more than `longest` seconds (a user stopped that long is waiting
    for a suggestion, however slow the answer)."""
    wait = _wait_for_chance(sorted(pauses), elapsed, need, min_chance)
    return wait if longest is None else min(wait, longest)


def _wait_for_chance(ordered: list[float], elapsed: float, need: float, min_chance: float) -> float:
    if not ordered:
        return 0.0
    chance = min(min_chance, _HIGHEST_CHANCE)
    # The tail starts where fewer than _MIN_TAIL_SAMPLES pauses are longer.
    tail_starts = ordered[-_MIN_TAIL_SAMPLES] if len(ordered) >= _MIN_TAIL_SAMPLES else 0.0
    in_tail = max(tail_starts, need * chance / (1.0 - chance))
    moments = sorted({elapsed, *(p for p in ordered if p > elapsed), max(elapsed, in_tail)})
    for moment in moments:
        if chance_in_time(ordered, moment, need) >= chance:
            return moment - elapsed
    return max(0.0, in_tail - elapsed)  # not reached: in_tail meets the chance


def worth_going_on(pauses: Iterable[float], elapsed: float, need: float, min_chance: float) -> bool:
    """Whether a block on screen should generate its next line, `need` seconds away, `elapsed`
    seconds into the pause: the same chance as for asking, decided now."""
    return chance_in_time(sorted(pauses), elapsed, need) >= min_chance
