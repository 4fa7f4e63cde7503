"""The client's completion engine, reached over the Repair stream: CompletionQuery out,
CompletionAnswer back, every query with a deadline.

A query that times out, or an answer marked unavailable, counts as a failure; after a few
failures in a row the engine is treated as gone and the repair continues unguided, so a hung or
crashed engine slows a repair down by a few deadlines at most.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)


class StreamOracle:
    def __init__(
        self,
        send: Callable[[pb.RepairServerMessage], Awaitable[None]],
        deadline_s: float,
        max_failures: int,
    ) -> None:
        self._send = send
        self._deadline_s = deadline_s
        self._max_failures = max_failures
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.CompletionAnswer]] = {}
        self._failures = 0
        self.gone = False

    async def continuations(self, patch_so_far: str) -> list[str] | None:
        answer = await self._ask(pb.CompletionQuery(patch_so_far=patch_so_far))
        return None if answer is None else list(answer.continuations)

    async def unresolved_names(self, patch: str) -> list[str] | None:
        answer = await self._ask(pb.CompletionQuery(patch_so_far=patch, resolve_names=True))
        return None if answer is None else list(answer.unresolved_names)

    async def call_problems(self, patch_so_far: str) -> list[str] | None:
        answer = await self._ask(pb.CompletionQuery(patch_so_far=patch_so_far, check_calls=True))
        return None if answer is None else list(answer.call_problems)

    def deliver(self, answer: pb.CompletionAnswer) -> None:
        future = self._pending.pop(answer.query_id, None)
        if future is None:
            logger.debug("answer to unknown or expired query %d", answer.query_id)
        elif not future.done():
            future.set_result(answer)

    def close(self) -> None:
        """The client stopped sending: no pending or later query will be answered."""
        self.gone = True
        for future in self._pending.values():
            if not future.done():
                future.set_result(pb.CompletionAnswer(unavailable=True))
        self._pending.clear()

    async def _ask(self, query: pb.CompletionQuery) -> pb.CompletionAnswer | None:
        if self.gone:
            return None
        query.query_id = next(self._ids)
        future: asyncio.Future[pb.CompletionAnswer] = asyncio.get_running_loop().create_future()
        self._pending[query.query_id] = future
        await self._send(pb.RepairServerMessage(query=query))
        try:
            answer = await asyncio.wait_for(future, self._deadline_s)
        except TimeoutError:
            self._pending.pop(query.query_id, None)
            self._failed()
            return None
        if answer.unavailable:
            self._failed()
            return None
        self._failures = 0
        return answer

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self._max_failures and not self.gone:
            logger.info(
                "completion engine failed %d times in a row; continuing unguided", self._failures
            )
            self.gone = True
