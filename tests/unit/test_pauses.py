"""Learning the user's ordinary pause at block points (lsp_server/pauses.py)."""

from __future__ import annotations

from lsp_server.pauses import PauseTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pause_at_block_point(tracker: PauseTracker, clock: Clock, seconds: float) -> None:
    tracker.changed("a")  # a keystroke, then a block request, then the next keystroke
    clock.now += 0.2
    tracker.at_block_point("a")
    clock.now += seconds - 0.2
    tracker.changed("a")


def test_no_extra_wait_until_enough_pauses_are_known() -> None:
    clock = Clock()
    tracker = PauseTracker(min_samples=4, clock=clock)
    for _ in range(3):
        _pause_at_block_point(tracker, clock, 1.0)
    assert tracker.usual_pause_s() is None
    assert tracker.wait_for_long_pause_s("a") == 0.0


def test_blocks_wait_for_a_pause_longer_than_usual() -> None:
    clock = Clock()
    tracker = PauseTracker(min_samples=4, factor=1.25, clock=clock)
    for seconds in (1.0, 1.2, 0.8, 1.0, 9.0):  # one long stop does not move the median much
        _pause_at_block_point(tracker, clock, seconds)
    assert tracker.usual_pause_s() == 1.25
    # The last change was just now: the pause counts as long 1.25 s from it.
    assert tracker.wait_for_long_pause_s("a") == 1.25
    clock.now += 0.5
    assert abs(tracker.wait_for_long_pause_s("a") - 0.75) < 1e-9
    clock.now += 1.0
    assert tracker.wait_for_long_pause_s("a") == 0.0


def test_only_pauses_at_block_points_count_and_the_wait_is_capped() -> None:
    clock = Clock()
    tracker = PauseTracker(min_samples=2, cap_s=3.0, clock=clock)
    for _ in range(20):  # ordinary keystrokes, no block point: nothing learned
        tracker.changed("a")
        clock.now += 0.1
    assert tracker.usual_pause_s() is None
    for _ in range(3):
        _pause_at_block_point(tracker, clock, 30.0)  # someone who stops for long at blocks
    assert tracker.usual_pause_s() == 3.0
    # Pauses in one document teach the wait in another (it is the person's rhythm).
    tracker.changed("b")
    assert tracker.wait_for_long_pause_s("b") == 3.0
