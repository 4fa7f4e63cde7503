"""The Repair RPC over real gRPC with scripted engines: guided vs unguided candidates, bad input,
a completion engine that hangs or fails, and a client that goes away mid-repair."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from prometheus_client import REGISTRY

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from serving.config import EngineConfig, RepairConfig, ServingConfig
from serving.errors import ErrorInterceptor
from serving.server import QuillServicer
from tests.conftest import in_process_serving
from tests.support.fakes import ScriptedNameOracle, TokenScriptedEngine

FILE = "def total(items):\n    result = sum(items)\n    return rslt\n"
SCRIPT = {
    "    # fixed:": [("\n", -0.1)],
    "   ": [(" return", -0.1)],
    "    return": [(" reslt", -0.2), (" result", -0.9)],
    "    return reslt": [("\n", -0.1)],
    "    return result": [("\n", -0.3)],
}

Answerer = Callable[[pb.CompletionQuery], Awaitable[pb.CompletionAnswer | None]]


def scripted_engine(
    table: dict[str, list[tuple[str, float]]], **kwargs: float
) -> TokenScriptedEngine:
    return TokenScriptedEngine(lambda text: table.get(text.rsplit("\n", 1)[-1], []), **kwargs)


def answer_with(engine: ScriptedNameOracle) -> Answerer:
    async def answer(query: pb.CompletionQuery) -> pb.CompletionAnswer:
        if query.resolve_names:
            names = await engine.unresolved_names(query.patch_so_far)
            return pb.CompletionAnswer(query_id=query.query_id, unresolved_names=names or [])
        found = await engine.continuations(query.patch_so_far)
        if found is None:
            return pb.CompletionAnswer(query_id=query.query_id, unavailable=True)
        return pb.CompletionAnswer(query_id=query.query_id, continuations=found)

    return answer


def start(**fields: object) -> pb.RepairStart:
    values: dict[str, object] = {
        "file_path": "total.py", "language": "python", "text": FILE,
        "start": pb.Position(line=2), "end": pb.Position(line=2), "budget": 2,
    }  # fmt: skip
    values.update(fields)
    return pb.RepairStart(**values)  # type: ignore[arg-type]


async def drive(
    address: str, request: pb.RepairStart, answer: Answerer | None
) -> tuple[list[pb.RepairCandidate], pb.RepairDone | None, list[pb.CompletionQuery]]:
    """A minimal client: answers every query with `answer` (None: never answers)."""
    outgoing: asyncio.Queue[pb.RepairClientMessage | None] = asyncio.Queue()
    outgoing.put_nowait(pb.RepairClientMessage(start=request))

    async def messages() -> AsyncIterator[pb.RepairClientMessage]:
        while (message := await outgoing.get()) is not None:
            yield message

    candidates: list[pb.RepairCandidate] = []
    queries: list[pb.CompletionQuery] = []
    done = None
    async with open_channel(address) as channel:
        call = quill_pb2_grpc.QuillStub(channel).Repair(messages(), timeout=30)
        async for message in call:
            kind = message.WhichOneof("message")
            if kind == "query":
                queries.append(message.query)
                reply = await answer(message.query) if answer is not None else None
                if reply is not None:
                    outgoing.put_nowait(pb.RepairClientMessage(answer=reply))
            elif kind == "candidate":
                candidates.append(message.candidate)
            elif kind == "done":
                done = message.done
        outgoing.put_nowait(None)
    return candidates, done, queries


@contextlib.asynccontextmanager
async def repair_server(engine: TokenScriptedEngine, config: RepairConfig) -> AsyncIterator[str]:
    """The real servicer and error interceptor with custom repair settings."""
    servicer = QuillServicer(ServingConfig(engine=EngineConfig(model="scripted"), repair=config))
    servicer.attach_engine(engine)
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    quill_pb2_grpc.add_QuillServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _repairs_counted(mode: str) -> float:
    return REGISTRY.get_sample_value("quill_repairs_total", {"mode": mode, "outcome": "ok"}) or 0


def test_guided_and_unguided_repair_through_serving() -> None:
    counted_before = _repairs_counted("guided"), _repairs_counted("unguided")

    async def scenario() -> None:
        engine = scripted_engine(SCRIPT)
        async with in_process_serving(engine) as address:
            names = ScriptedNameOracle()
            guided, done, queries = await drive(address, start(), answer_with(names))
            unguided, unguided_done, unguided_queries = await drive(
                address, start(unguided=True), answer_with(names)
            )
        assert [c.patch for c in guided] == ["    return result"]
        assert guided[0].parses and guided[0].names_resolve
        assert done is not None and done.candidates == 1 and done.model == "token-scripted"
        assert done.engine_queries >= 1 and done.pruned_tokens >= 1
        assert any(q.patch_so_far == "    return reslt" for q in queries)
        assert [c.patch for c in unguided] == ["    return reslt"]
        assert unguided[0].parses and not unguided[0].names_resolve
        # Unguided decoding asks the engine only to check the finished patch.
        assert [q.resolve_names for q in unguided_queries] == [True]
        assert unguided_done is not None and unguided_done.engine_queries == 0

    asyncio.run(scenario())
    after = _repairs_counted("guided"), _repairs_counted("unguided")
    assert (after[0] - counted_before[0], after[1] - counted_before[1]) == (1, 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": pb.Position(line=7), "end": pb.Position(line=9)}, "but the file has 4 lines"),
        ({"start": pb.Position(line=2), "end": pb.Position(line=1)}, "after its end line"),
        ({"text": "  \n"}, "the file is empty"),
        (
            {
                "text": "def f(:\n    return reslt\n",
                "start": pb.Position(line=1),
                "end": pb.Position(line=1),
            },
            "does not parse outside lines 2-2",
        ),  # fmt: skip
        (
            {"text": "x = 1\x00\n", "start": pb.Position(line=0), "end": pb.Position(line=0)},
            "NUL",
        ),  # fmt: skip
        ({"budget": 1000}, "budget 1000 exceeds"),
        ({"temperature": 5.0}, "outside [0, 2]"),
    ],
)
def test_bad_requests_get_a_clear_invalid_argument(fields: dict[str, object], message: str) -> None:
    async def scenario() -> None:
        async with repair_server(scripted_engine(SCRIPT), RepairConfig()) as address:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await drive(address, start(**fields), answer_with(ScriptedNameOracle()))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (error.value.details() or "")

    asyncio.run(scenario())


def test_a_broken_region_in_a_file_that_otherwise_parses_is_repaired() -> None:
    text = "def f(x):\n    return (x +\n"
    table = {
        "   ": [(" return", -0.1)],
        "    return": [(" x", -0.1)],
        "    return x": [("\n", -0.1)],
    }

    async def scenario() -> None:
        async with repair_server(scripted_engine(table), RepairConfig()) as address:
            request = start(text=text, start=pb.Position(line=1), end=pb.Position(line=1))
            candidates, done, _ = await drive(address, request, answer_with(
                ScriptedNameOracle(names=("x",))))  # fmt: skip
        assert [(c.patch, c.parses) for c in candidates] == [("    return x", True)]
        assert done is not None

    asyncio.run(scenario())


def test_the_first_message_must_be_repair_start() -> None:
    async def scenario() -> None:
        first = pb.RepairClientMessage(answer=pb.CompletionAnswer(query_id=1))
        async with (
            repair_server(scripted_engine(SCRIPT), RepairConfig()) as address,
            open_channel(address) as channel,
        ):
            call = quill_pb2_grpc.QuillStub(channel).Repair(iter([first]))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in call:
                    pass
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "RepairStart" in (error.value.details() or "")

    asyncio.run(scenario())


@pytest.mark.parametrize("behaviour", ["never answers", "unavailable"])
def test_a_failing_completion_engine_falls_back_to_unguided(behaviour: str) -> None:
    config = RepairConfig(query_deadline_s=0.2, max_engine_failures=2)

    async def scenario() -> None:
        names = ScriptedNameOracle(unavailable=True)
        answer = None if behaviour == "never answers" else answer_with(names)
        async with repair_server(scripted_engine(SCRIPT), config) as address:
            started = time.perf_counter()
            candidates, done, queries = await drive(address, start(budget=3), answer)
            elapsed = time.perf_counter() - started
        assert [c.patch for c in candidates] == ["    return reslt"]
        assert done is not None
        # At most max_engine_failures deadlines were waited for, then no more queries.
        assert len(queries) <= 2
        assert elapsed < 10 * config.query_deadline_s
        assert not candidates[0].names_resolve  # unknown is not reported as resolved

    asyncio.run(scenario())


def test_a_client_going_away_aborts_every_engine_request() -> None:
    endless = {"   ": [(" x", -0.1)]}
    for size in range(1, 60):
        endless["    " + " ".join(["x"] + ["+"] * size)] = [(" +", -0.1)]
    endless["    x"] = [(" +", -0.1)]
    engine = scripted_engine(endless, step_delay_s=0.05)

    async def scenario() -> None:
        async with repair_server(engine, RepairConfig(concurrency=2)) as address:
            task = asyncio.create_task(
                drive(address, start(budget=4), answer_with(ScriptedNameOracle()))
            )
            while engine.steps_generated < 4:
                await asyncio.sleep(0.02)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for _ in range(50):
                if len(engine.aborted) == len(engine.requests):
                    break
                await asyncio.sleep(0.05)
            steps = engine.steps_generated
            await asyncio.sleep(0.3)
            assert engine.steps_generated == steps  # nothing generates for nobody
        assert engine.requests and len(engine.aborted) == len(engine.requests)

    asyncio.run(scenario())
