"""How long this user pauses where a block could be suggested, learned from their typing.

A multi-line suggestion costs many engine tokens and seconds to generate. Asked for during an
ordinary pause (the one a person makes at every line end before typing on), it is still
generating when the next keystroke comes, and those tokens are thrown away. So the language
server learns the user's ordinary pause at block points (from the time between the last change
before a block request and the next change) and asks for a block only once the current pause
has lasted clearly longer than that: when the person is waiting, not typing.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable


class PauseTracker:
    """Pauses at block points, per language server (a person's habit, not a file's)."""

    def __init__(
        self,
        window: int = 16,
        min_samples: int = 4,
        factor: float = 1.25,
        cap_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Until `min_samples` pauses are known, no extra wait. Then a block waits for a pause
        of `factor` times the median of the last `window` ones, never more than `cap_s`."""
        self._samples: deque[float] = deque(maxlen=window)
        self._min_samples = min_samples
        self._factor = factor
        self._cap_s = cap_s
        self._clock = clock
        self._last_change: dict[str, float] = {}
        self._pause_started: dict[str, float] = {}

    def changed(self, uri: str) -> None:
        """A document changed: a pause at a block point (if one was open) ends here."""
        now = self._clock()
        started = self._pause_started.pop(uri, None)
        if started is not None:
            # A very long pause (the person left) says nothing about their rhythm.
            self._samples.append(min(now - started, 4 * self._cap_s))
        self._last_change[uri] = now

    def at_block_point(self, uri: str) -> None:
        """A block is being considered for `uri`: the pause since its last change counts."""
        self._pause_started.setdefault(uri, self._last_change.get(uri, self._clock()))

    def usual_pause_s(self) -> float | None:
        """The learned threshold for a long pause, or None while too little is known."""
        if len(self._samples) < self._min_samples:
            return None
        return min(self._cap_s, self._factor * statistics.median(self._samples))

    def wait_for_long_pause_s(self, uri: str) -> float:
        """Seconds from now until the current pause in `uri` counts as long (0: it does)."""
        threshold = self.usual_pause_s()
        if threshold is None:
            return 0.0
        since = self._last_change.get(uri, self._clock())
        return max(0.0, since + threshold - self._clock())
