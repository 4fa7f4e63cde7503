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
from serving.engine.base import GenerationRequest
from serving.errors import ErrorInterceptor
from serving.server import QuillServicer
from tests.conftest import in_process_serving
from tests.support.fakes import ScriptedNameOracle, TokenScriptedEngine
from tests.support.health import health_answers_during

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
        if query.check_calls:
            problems = await engine.call_problems(query.patch_so_far)
            return pb.CompletionAnswer(query_id=query.query_id, call_problems=problems or [])
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
        # Unguided decoding asks the engine only to check the finished patch: names, calls.
        assert [(q.resolve_names, q.check_calls) for q in unguided_queries] == [
            (True, False),
            (False, True),
        ]
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
        # At most max_engine_failures deadlines were waited for, then no more queries (one
        # continuation query, then the finished patch's names and calls at most).
        assert len(queries) <= 3
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


def test_a_stream_without_repair_start_ends_at_the_first_message_deadline() -> None:
    config = RepairConfig(first_message_timeout_s=0.3)

    async def scenario() -> None:
        never = asyncio.Event()

        async def silent() -> AsyncIterator[pb.RepairClientMessage]:
            await never.wait()  # a client that opens the stream and sends nothing
            yield pb.RepairClientMessage()

        async with (
            in_process_serving(scripted_engine(SCRIPT), repair=config) as address,
            open_channel(address) as channel,
        ):
            started = time.perf_counter()
            call = quill_pb2_grpc.QuillStub(channel).Repair(silent(), timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in call:
                    pass
            elapsed = time.perf_counter() - started
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no RepairStart within 0.3 s" in (error.value.details() or "")
        assert elapsed < 10

    asyncio.run(scenario())


LOOP = "def show(arr):\n    for x in arr:\n        print(x)\n    return arr\n"


def test_a_candidate_that_does_not_parse_is_never_returned() -> None:
    # The model's favourite replaces the loop header by a statement; the body then no longer
    # parses. Unguided decoding drops it at the end; guided decoding never finishes it.
    table = {
        "   ": [(" return", -0.1), (" for", -0.7)],
        "    return": [(" arr", -0.1)],
        "    return arr": [("\n", -0.1)],
        "    for": [(" x", -0.1)],
        "    for x": [(" in", -0.1)],
        "    for x in": [(" reversed", -0.1)],
        "    for x in reversed": [("(arr)", -0.1)],
        "    for x in reversed(arr)": [(":\n", -0.1)],
    }
    names = ScriptedNameOracle(names=("arr", "x", "reversed", "print"))

    async def scenario() -> None:
        async with repair_server(scripted_engine(table), RepairConfig()) as address:
            request = start(text=LOOP, start=pb.Position(line=1), end=pb.Position(line=1))
            guided, guided_done, _ = await drive(address, request, answer_with(names))
            request.unguided = True
            unguided, unguided_done, _ = await drive(address, request, answer_with(names))
        assert [c.patch for c in guided] == ["    for x in reversed(arr):"]
        assert guided_done is not None and guided_done.syntax_prunes >= 1
        # `return arr` was pruned while decoding, so no sample was thrown away at the end.
        assert guided_done.unparsable == 0
        assert unguided == []
        assert unguided_done is not None and unguided_done.unparsable >= 1
        assert unguided_done.candidates == 0 and unguided_done.stopped_by == "samples"

    asyncio.run(scenario())


def _large_file() -> str:
    """Nearly 1 MB (the limit) of Python that parses, with FILE's bug at its end."""
    helpers = "".join(f"def helper_{n}(x):\n    return x + {n}\n\n\n" for n in range(23_000))
    return helpers + FILE


def test_health_answers_within_100_ms_while_a_1_mb_file_is_repaired() -> None:
    text = _large_file()
    assert 900_000 < len(text) < 1_000_000
    region_line = text.count("\n") - 1  # FILE's `return rslt`

    async def scenario() -> None:
        async with in_process_serving(scripted_engine(SCRIPT), repair=RepairConfig()) as address:
            request = start(text=text, start=pb.Position(line=region_line),
                            end=pb.Position(line=region_line), unguided=True)  # fmt: skip
            answers, (candidates, done, _) = await health_answers_during(
                drive(address, request, None), address
            )
        assert done is not None
        # The file with the patch in place was parsed (in the pool: it is large).
        assert [(c.patch, c.parses) for c in candidates] == [("    return reslt", True)]
        wall, cpu = (max(column) for column in zip(*answers, strict=True))
        print(f"{len(answers)} health answers during the repair: slowest {wall * 1e3:.0f} ms, "
              f"at most {cpu * 1e3:.0f} ms of serving's CPU time in one")  # fmt: skip
        assert len(answers) >= 10
        # Nothing serving does holds an answer up by 100 ms (parsing the file alone takes
        # about 1.6 s: it happens in another process).
        assert cpu < 0.1

    asyncio.run(scenario())


def test_duplicates_do_not_count_against_the_budget() -> None:
    # At the first temperature the model copies the buggy line; hotter rounds find two fixes.
    def script(text: str, request: GenerationRequest) -> list[tuple[str, float]]:
        line = text.rsplit("\n", 1)[-1]
        if line == "   ":
            return [(" return", -0.1)]
        if line == "    return":
            if request.temperature < 1.0:
                return [(" rslt", -0.1)]
            hot = request.seed % 2 == 0
            return [(" result" if hot else " total", -0.5)]
        return [("\n", -0.1)] if line.count(" ") == 5 else []

    engine = TokenScriptedEngine(lambda text: [], request_script=script)
    config = RepairConfig(concurrency=1, temperature_step=0.3)

    async def scenario() -> None:
        async with repair_server(engine, config) as address:
            names = ScriptedNameOracle(names=("result", "total", "rslt"))
            candidates, done, _ = await drive(
                address, start(budget=2, unguided=True), answer_with(names)
            )
        assert sorted(c.patch for c in candidates) == ["    return result", "    return total"]
        assert done is not None
        assert done.candidates == 2 and done.stopped_by == "budget"
        # Two samples at 0.8 copied the buggy line; they did not use up the budget.
        assert done.duplicates >= 2 and done.samples == done.candidates + done.duplicates

    asyncio.run(scenario())


def test_sampling_stops_at_the_sample_cap_when_the_model_repeats_itself() -> None:
    async def scenario() -> None:
        async with repair_server(scripted_engine(SCRIPT), RepairConfig()) as address:
            candidates, done, _ = await drive(
                address, start(budget=2), answer_with(ScriptedNameOracle())
            )
        assert [c.patch for c in candidates] == ["    return result"]
        assert done is not None
        assert (done.samples, done.duplicates, done.stopped_by) == (6, 5, "samples")

    asyncio.run(scenario())


def test_a_call_missing_an_argument_is_pruned_at_its_closing_paren() -> None:
    text = "def square(x):\n    return pow(x)\n"
    table = {
        "   ": [(" return", -0.1)],
        "    return": [(" pow", -0.1)],
        "    return pow": [("(", -0.1)],
        "    return pow(": [("x", -0.1)],
        "    return pow(x": [(")", -0.1), (",", -0.6)],
        "    return pow(x,": [(" 2", -0.1)],
        "    return pow(x, 2": [(")", -0.1)],
        "    return pow(x, 2)": [("\n", -0.1)],
        "    return pow(x)": [("\n", -0.1)],
    }
    names = ScriptedNameOracle(names=("pow", "x"), arity={"pow": 2})

    async def scenario() -> None:
        async with repair_server(scripted_engine(table), RepairConfig()) as address:
            request = start(text=text, start=pb.Position(line=1), end=pb.Position(line=1))
            guided, done, queries = await drive(address, request, answer_with(names))
            request.unguided = True
            unguided, _, _ = await drive(address, request, answer_with(names))
        assert [c.patch for c in guided] == ["    return pow(x, 2)"]
        assert list(guided[0].call_problems) == []
        assert done is not None and done.call_prunes >= 1
        assert any(q.check_calls and q.patch_so_far == "    return pow(x)" for q in queries)
        # Unguided decoding copies the buggy line, which is no candidate.
        assert unguided == []

    asyncio.run(scenario())


def test_a_candidate_with_a_mismatching_call_is_flagged() -> None:
    text = "def square(x):\n    return x\n"
    table = {
        "   ": [(" return", -0.1)],
        "    return": [(" pow", -0.1)],
        "    return pow": [("(x)", -0.1)],
        "    return pow(x)": [("\n", -0.1)],
    }
    names = ScriptedNameOracle(names=("pow", "x"), arity={"pow": 2})

    async def scenario() -> None:
        async with repair_server(scripted_engine(table), RepairConfig()) as address:
            request = start(text=text, start=pb.Position(line=1), end=pb.Position(line=1),
                            unguided=True)  # fmt: skip
            unguided, _, _ = await drive(address, request, answer_with(names))
        assert [c.patch for c in unguided] == ["    return pow(x)"]
        assert list(unguided[0].call_problems) == ["pow() takes 2 arguments, 1 given"]

    asyncio.run(scenario())


def test_regions_of_several_lines_and_insertion_points() -> None:
    text = "def total(xs):\n    s = 0\n    for x in xs:\n        s -= x\n    return s\n"
    table = {
        "   ": [(" for", -0.1)],
        "    for": [(" x in xs:\n", -0.1)],
        "": [("        s += x\n", -0.1)],  # the second line of the region
        "       ": [(" s += x\n", -0.1)],  # the inserted line (head: 8 spaces less one)
    }
    names = ScriptedNameOracle(names=("x", "xs", "s"))

    async def scenario() -> None:
        async with repair_server(scripted_engine(table), RepairConfig()) as address:
            lines = start(text=text, start=pb.Position(line=2), end=pb.Position(line=3))
            several, _, _ = await drive(address, lines, answer_with(names))
            insert = start(text=text, start=pb.Position(line=2), end=pb.Position(line=2),
                           insert=True)  # fmt: skip
            inserted, _, _ = await drive(address, insert, answer_with(names))
            bad = start(text=text, start=pb.Position(line=2), end=pb.Position(line=3),
                        insert=True)  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await drive(address, bad, answer_with(names))
        assert [c.patch for c in several] == ["    for x in xs:\n        s += x"]
        assert [c.patch for c in inserted] == ["        s += x"]
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "insertion goes after one line" in (error.value.details() or "")

    asyncio.run(scenario())


def test_a_sample_that_differs_only_in_spacing_or_comments_is_a_duplicate() -> None:
    table = {
        "   ": [(" return", -0.1)],
        "    return": [("  rslt", -0.1)],
        "    return  rslt": [("  # the same code", -0.1)],
        "    return  rslt  # the same code": [("\n", -0.1)],
    }

    async def scenario() -> None:
        async with repair_server(scripted_engine(table), RepairConfig()) as address:
            candidates, done, _ = await drive(
                address, start(budget=1, unguided=True), answer_with(ScriptedNameOracle())
            )
        assert candidates == []
        assert done is not None and done.duplicates == done.samples == 3

    asyncio.run(scenario())
