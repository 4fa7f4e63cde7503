"""A scripted `Repair` servicer on a real in-process grpc.aio server, for unit tests of the client
side of repair (repair_client, the language server's code action, `quill repair`). It asks the
client's completion engine the queries it is given, records the answers, then streams candidates.
Never used in end-to-end tests: those run P1's guided decoder on real vLLM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from quill.launcher import free_port
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc


@dataclass
class ScriptedRepair(quill_pb2_grpc.QuillServicer):
    # (patch_so_far, resolve_names) asked in order, each answer awaited before the next.
    queries: list[tuple[str, bool]] = field(default_factory=list)
    # Candidates sent after the queries; `candidates_from_answers` may add more.
    candidates: list[pb.RepairCandidate] = field(default_factory=list)
    candidates_from_answers: (
        Callable[[list[pb.CompletionAnswer]], list[pb.RepairCandidate]] | None
    ) = None
    # Wait this long (seconds) before the candidates; a long wait lets tests cancel.
    delay_s: float = 0.0
    # Fail the call with this status instead of answering.
    abort: tuple[grpc.StatusCode, str] | None = None
    # Close the stream without a RepairDone.
    skip_done: bool = False
    starts: list[pb.RepairStart] = field(default_factory=list)
    answers: list[pb.CompletionAnswer] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once a call has begun its `delay_s` wait (the delay it waits is fixed from then on).
    waiting: asyncio.Event = field(default_factory=asyncio.Event)

    async def Repair(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
        first = await anext(request_iterator)
        self.starts.append(first.start)
        self.started.set()
        if self.abort is not None:
            await context.abort(*self.abort)
        completed = False
        try:
            for query_id, (patch, resolve) in enumerate(self.queries, start=1):
                yield pb.RepairServerMessage(
                    query=pb.CompletionQuery(
                        query_id=query_id, patch_so_far=patch, resolve_names=resolve
                    )
                )
                message = await anext(request_iterator)
                assert message.answer.query_id == query_id
                self.answers.append(message.answer)
            budget = first.start.budget or 2
            yield pb.RepairServerMessage(progress=pb.RepairProgress(samples_done=0, budget=budget))
            delay_s = self.delay_s
            self.waiting.set()
            await asyncio.sleep(delay_s)
            produced = list(self.candidates)
            if self.candidates_from_answers is not None:
                produced += self.candidates_from_answers(self.answers)
            for candidate in produced:
                yield pb.RepairServerMessage(candidate=candidate)
            yield pb.RepairServerMessage(
                progress=pb.RepairProgress(samples_done=budget, budget=budget)
            )
            if not self.skip_done:
                yield pb.RepairServerMessage(
                    done=pb.RepairDone(candidates=len(produced), engine_queries=len(self.answers))
                )
            completed = True
        finally:
            # Cancelled while awaiting (CancelledError) or while suspended at a yield (the
            # generator is closed): either way the client went away before the end.
            if not completed:
                self.cancelled.set()


@contextlib.asynccontextmanager
async def scripted_repair_serving(servicer: ScriptedRepair) -> AsyncIterator[str]:
    """A real grpc.aio server on a free loopback port serving `servicer`; yields its address."""
    server = grpc.aio.server()
    quill_pb2_grpc.add_QuillServicer_to_server(servicer, server)
    # The language server checks health before it sends anything.
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    try:
        yield address
    finally:
        await server.stop(grace=0.2)
