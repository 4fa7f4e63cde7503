"""CPU-heavy parsing of large inputs, off the event loop.

Python's parser (`ast.parse`) and tree-sitter hold the GIL for a whole parse: measured on a
1 MB file, `ast.parse` took 1.6 s and tree-sitter 0.38 s, and a thread ticking every
millisecond beside them did not run once meanwhile. A thread therefore does not keep the event
loop answering health and other clients; a process does. Inputs of `LARGE_INPUT_CHARS` or more
go to a small process pool (started on first use, with "spawn", so it inherits no engine state
or threads); smaller ones are parsed in place, where the round trip to a process would cost
more than the parse.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")

# About 50 ms of Python parsing on a loaded 2-core machine: longer stalls go to the pool.
LARGE_INPUT_CHARS = 32_000


class ParsePool:
    """A process pool for parses of large inputs; `close` at shutdown ends its processes."""

    def __init__(self, workers: int = 1) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, size: int, function: Callable[..., _T], *args: object) -> _T:
        """`function(*args)`, in the pool when `size` (characters of input) is large."""
        if size < LARGE_INPUT_CHARS:
            return function(*args)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers, mp_context=multiprocessing.get_context("spawn")
            )
        # Submitted from a thread: the first submit starts the process (tens of ms).
        submitted = await asyncio.to_thread(self._pool.submit, function, *args)
        return await asyncio.wrap_future(submitted)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
