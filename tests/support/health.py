"""Whether serving stays responsive while it works: health asked again and again meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_R = TypeVar("_R")


async def health_answers_during(
    work: Awaitable[_R], address: str
) -> tuple[list[tuple[float, float]], _R]:
    """Ask health every 10 ms from before `work` starts until it ends. Each answer's (seconds
    of wall-clock time, seconds of this process's CPU time): serving runs in this process, so
    the CPU time is what serving's own work cost the answer, and a machine busy with other
    processes cannot inflate it. Also returns what the work returned."""
    answers: list[tuple[float, float]] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def check() -> None:
            wall, cpu = time.perf_counter(), time.process_time()
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            answers.append((time.perf_counter() - wall, time.process_time() - cpu))

        await check()  # connected before the work starts
        running = asyncio.ensure_future(work)
        while not running.done():
            await check()
            await asyncio.sleep(0.01)
    return answers[1:], running.result()
