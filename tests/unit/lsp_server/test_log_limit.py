"""Rate-limited logging (lsp_server/log_limit.py), on a clock the test drives."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from lsp_server.log_limit import RateLimitFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, RateLimitFilter, _Clock]]:
    clock = _Clock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    limit = RateLimitFilter(burst=3, interval_s=10.0, clock=clock)
    handler.addFilter(limit)
    log = logging.getLogger("test_log_limit")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log, stream, limit, clock
    log.removeHandler(handler)


def test_a_flood_of_one_kind_is_cut_to_a_burst_then_summarised(logged) -> None:  # type: ignore[no-untyped-def]
    log, stream, limit, clock = logged
    for n in range(1000):
        log.warning("bad message %d", n)
    log.warning("another kind")
    assert stream.getvalue().splitlines() == [
        "bad message 0",
        "bad message 1",
        "bad message 2",
        "another kind",
    ]
    clock.now = 10.0  # one line's worth of time later
    log.warning("bad message %d", 1000)
    assert stream.getvalue().splitlines()[-1] == "bad message 1000 [997 more like this suppressed]"
    log.warning("bad message %d", 1001)
    limit.flush()
    assert stream.getvalue().splitlines()[-1] == "1 more 'bad message %d' lines were suppressed"


def test_records_can_name_their_kind(logged) -> None:  # type: ignore[no-untyped-def]
    log, stream, _, _ = logged
    for code in (1, 2):
        for _ in range(5):
            log.warning("refused (%d)", code, extra={"rate_limit_kind": f"refused {code}"})
    assert stream.getvalue().splitlines() == ["refused (1)"] * 3 + ["refused (2)"] * 3


def test_tracebacks_are_reduced_to_the_exception_and_its_place(logged) -> None:  # type: ignore[no-untyped-def]
    log, stream, _, _ = logged
    try:
        {}["the client's secret text"]
    except KeyError:
        log.warning("handler failed", exc_info=True)
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("handler failed (KeyError at test_log_limit.py:")
    assert "secret" not in line and "Traceback" not in stream.getvalue()
