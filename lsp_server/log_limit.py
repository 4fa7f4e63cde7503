"""Logging that stays useful when a client floods the server with bad input.

One filter on the stderr handler: lines of one kind (logger, level and message template, or the
`rate_limit_kind` a record names in `extra`) pass
`burst` at once and then one every `interval_s`; the rest are counted, and the next line of that
kind that passes says how many were left out (`flush` reports what is still counted at the end).
Tracebacks are printed only at DEBUG: at other levels a record's exception is reduced to its
type and the place it was raised (its message may quote the client's text).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Kinds remembered at once; the least recently seen are forgotten first.
_MAX_KINDS = 512


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    def __init__(
        self,
        burst: int = 10,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, int, str], _Bucket] = OrderedDict()
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "rate_limit_summary", False):
            return True
        kind = getattr(record, "rate_limit_kind", None) or str(record.msg)
        bucket = self._bucket((record.name, record.levelno, kind))
        if bucket.tokens < 1:
            bucket.suppressed += 1
            self.suppressed_total += 1
            return False
        bucket.tokens -= 1
        suffix = ""
        if bucket.suppressed:
            suffix = f" [{bucket.suppressed} more like this suppressed]"
            bucket.suppressed = 0
        if record.exc_info:
            suffix = f" ({_where(record.exc_info)}; traceback at DEBUG)" + suffix
            record.exc_info = None
            record.exc_text = None
        if suffix:
            record.msg = record.getMessage() + suffix
            record.args = None
        return True

    def _bucket(self, key: tuple[str, int, str]) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=self.burst, updated=now)
            if len(self._buckets) > _MAX_KINDS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            refill = (now - bucket.updated) / self.interval_s
            bucket.tokens = min(self.burst, bucket.tokens + refill)
            bucket.updated = now
        return bucket

    def flush(self) -> None:
        """Log one summary line per kind that still has lines suppressed."""
        for (name, level, kind), bucket in self._buckets.items():
            if bucket.suppressed:
                logging.getLogger(name).log(
                    level,
                    "%d more %r lines were suppressed",
                    bucket.suppressed,
                    kind,
                    extra={"rate_limit_summary": True},
                )
                bucket.suppressed = 0


def _where(exc_info: tuple[type[BaseException], BaseException, object] | tuple[None, ...]) -> str:
    kind, _, trace = exc_info
    name = kind.__name__ if kind is not None else "exception"
    frames = traceback.extract_tb(trace) if trace is not None else []  # type: ignore[arg-type]
    if not frames:
        return name
    last = frames[-1]
    return f"{name} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


def install(level: str) -> RateLimitFilter | None:
    """Put one filter on every handler of the root logger, unless the level is DEBUG (asked
    for everything, tracebacks included)."""
    if level.upper() == "DEBUG":
        return None
    limit = RateLimitFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(limit)
    return limit
