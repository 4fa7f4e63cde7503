"""Outages and restarts of serving, through the real language server and the real gRPC serving
layer (scripted engine): recovery within 2 s of serving coming back, without hammering it while
it is away, and acceptance events that survive a restart of serving."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
from lsprotocol import types
from pytest_lsp import LanguageClient

from quill.channel import open_channel
from quill_cli.launcher import free_port
from tests.conftest import ROOT, in_process_serving
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete_at_end, edit, execute, initialize, open_document
from tests.support.metrics import metric, suggestions_counted

URI = (ROOT / "tests" / "data" / "sample.py").as_uri()
TEXT = "def add(a, b):\n    return "
# The promise: the first suggestion within this long of serving being back.
RECOVERY_LIMIT_S = 2.0


class _Typist:
    """Types one character, then asks: each request is new (type-ahead cannot answer it)."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.text = TEXT
        self.version = 1
        open_document(client, URI, TEXT)

    async def items(self) -> tuple[types.InlineCompletionItem, ...]:
        line, column = len(self.text.split("\n")) - 1, len(self.text.split("\n")[-1])
        self.version += 1
        edit(self.client, URI, self.version, (line, column), (line, column), "x")
        self.text += "x"
        return tuple((await complete_at_end(self.client, URI, self.text)).items)

    async def first_suggestion(self, every_s: float) -> float:
        """Ask every `every_s` seconds until a suggestion comes; returns when it came."""
        while not await self.items():
            await asyncio.sleep(every_s)
        return time.monotonic()


async def _serving_since(address: str) -> float:
    """When serving at `address` first answers health with SERVING (asked every 20 ms)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with open_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic()
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.02)


async def test_the_first_suggestion_comes_within_2_s_of_serving_being_back(
    client: LanguageClient,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with in_process_serving(ScriptedEngine(chunks=["a + b"]), address=address):
        await initialize(client, servingAddress=address)
        typist = _Typist(client)
        assert await typist.items()
    # Serving is gone. The editor keeps asking (every 0.1 s) through a 5 s outage.
    outage_end = time.monotonic() + 5.0
    while time.monotonic() < outage_end:
        assert await typist.items() == ()
        await asyncio.sleep(0.1)
    stats: dict[str, Any] = await execute(client, "quill.stats")
    assert not stats["servingAvailable"]
    # About 50 requests, but at most 2 probes a second from requests and the background
    # probe's: nothing hammers the dead address.
    print(f"{stats['servingProbes']} health checks during the outage")
    assert 3 <= stats["servingProbes"] <= 16, stats["servingProbes"]
    unavailable = [m for m in client.messages if "unavailable" in m.message]
    assert len(unavailable) == 1

    asker = asyncio.ensure_future(typist.first_suggestion(0.1))
    watcher = asyncio.ensure_future(_serving_since(address))
    started = time.monotonic()
    async with in_process_serving(ScriptedEngine(chunks=["a + b"]), address=address):
        came = await asyncio.wait_for(asker, 20)
        back = await watcher
    recovery_s = came - back
    print(f"first suggestion {recovery_s:.2f} s after serving was back "
          f"({came - started:.2f} s after it was started again)")  # fmt: skip
    assert recovery_s < RECOVERY_LIMIT_S
    assert any("connected" in m.message for m in client.messages)


async def test_events_queued_across_a_restart_of_serving_are_counted_by_the_new_process(
    client: LanguageClient, tmp_path: Path
) -> None:
    shown, accepted = suggestions_counted()
    unknown = metric("quill_events_rejected_total", reason="unknown_suggestion")
    address = f"127.0.0.1:{free_port()}"
    rounds = 5
    async with in_process_serving(
        ScriptedEngine(chunks=["a + b"]), address=address, data_dir=tmp_path
    ):
        await initialize(client, servingAddress=address)
        items = []
        for index in range(rounds):  # one document each: no suggestion supersedes another
            uri = (ROOT / "tests" / "data" / f"restart_{index}.py").as_uri()
            open_document(client, uri, TEXT)
            items += (await complete_at_end(client, uri, TEXT)).items
    assert len(items) == rounds
    # Serving is gone; the user accepts every suggestion: the events wait in the language
    # server until serving is back, as a new process on the same data dir.
    for item in items:
        await execute(client, item.command.command, *item.command.arguments)
    stats: dict[str, Any] = await execute(client, "quill.stats")
    assert stats["eventsDelivered"] < 2 * rounds
    async with in_process_serving(
        ScriptedEngine(chunks=["a + b"]), address=address, data_dir=tmp_path
    ):
        for _ in range(200):
            stats = await execute(client, "quill.stats")
            if stats["eventsDelivered"] >= 2 * rounds:
                break
            await asyncio.sleep(0.1)
    assert stats["eventsDelivered"] == 2 * rounds, stats
    assert metric("quill_events_rejected_total", reason="unknown_suggestion") == unknown
    assert suggestions_counted() == (shown + rounds, accepted + rounds)
