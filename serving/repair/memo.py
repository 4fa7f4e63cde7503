"""The completion engine's answers per patch prefix, shared by every sample of one repair.

Concurrent samples asking about the same prefix wait for one query instead of sending two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# None: the engine could not answer (kept, so a slow engine is not asked the same thing again).
Answer = list[str] | None


class FeasibilityMemo:
    def __init__(self) -> None:
        self._answers: dict[str, asyncio.Future[Answer]] = {}
        self.hits = 0
        self.queries = 0

    async def get(self, patch_so_far: str, ask: Callable[[str], Awaitable[Answer]]) -> Answer:
        known = self._answers.get(patch_so_far)
        if known is not None:
            self.hits += 1
            return await asyncio.shield(known)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[patch_so_far] = future
        self.queries += 1
        try:
            answer = await ask(patch_so_far)
        except BaseException:
            # Not memoized: another sample may ask again.
            del self._answers[patch_so_far]
            future.cancel()
            raise
        future.set_result(answer)
        return answer
