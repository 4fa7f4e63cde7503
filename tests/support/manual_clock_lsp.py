"""The language server with a clock the test drives (`python -m tests.support.manual_clock_lsp`).

Time stands still in the server until the test sends the request `quillTest/advanceClock`
({"seconds": s}); its answer comes once every wait that has ended by then was woken. So what the
timing policy learns (pauses, answer times) and how long requests wait are exactly what the
test says, however busy the machine is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lsp_server.completion.timing import Clock

ADVANCE_CLOCK = "quillTest/advanceClock"


class ManualClock(Clock):
    def __init__(self) -> None:
        self._now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, woken))
        await woken

    def advance(self, seconds: float) -> None:
        """Move time on; waits that end strictly before the new time are woken (one ending
        exactly then loses to whatever the test sends next, say a keystroke)."""
        self._now += seconds
        due = [(end, f) for end, f in self._sleepers if end < self._now]
        self._sleepers = [(end, f) for end, f in self._sleepers if end >= self._now]
        for _, woken in due:
            if not woken.done():
                woken.set_result(None)


def main() -> None:
    import logging
    import os

    from lsp_server.app import create_server

    logging.basicConfig(level=os.environ.get("QUILL_TEST_LSP_LOG", "WARNING"))

    server = create_server()
    clock = ManualClock()
    server.state.clock = clock

    @server.feature(ADVANCE_CLOCK)
    def advance(ls: Any, params: Any) -> None:
        seconds = params["seconds"] if isinstance(params, dict) else params.seconds
        clock.advance(float(seconds))

    server.start_io()


if __name__ == "__main__":
    main()
