"""The Complete RPC over a real grpc.aio server, with a scripted engine in place of vLLM."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from tests.conftest import in_process_serving
from tests.support.fakes import ScriptedEngine


async def _collect(stub, request):  # type: ignore[no-untyped-def]
    deltas, done = [], None
    async for response in stub.Complete(request):
        if response.HasField("done"):
            done = response.done
        else:
            deltas.append(response.delta.text)
    return deltas, done


async def test_single_line_streams_deltas_then_final_message() -> None:
    # The prompt ends before the newline and indentation of the blank cursor line; the model
    # writes them, and the line ends at the next newline.
    engine = ScriptedEngine(chunks=["\n  ", "  return", " a", " +", " b", "\nprint(1)", "x"])
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        deltas, done = await _collect(
            quill_pb2_grpc.QuillStub(channel),
            pb.CompleteRequest(prefix="def add(a, b):\n    ", mode=pb.COMPLETION_MODE_SINGLE_LINE),
        )
    assert "".join(deltas) == "return a + b"
    assert done.text == "return a + b"
    assert done.completion_tokens == 6
    assert done.finish_reason == "stop"
    assert done.model == "scripted"
    assert len(done.suggestion_id) == 32
    assert done.timings.total_ms >= done.timings.decode_ms >= 0
    # Here the engine cannot stop at a newline (the output starts with one): serving does.
    assert engine.requests[0].stop == ()
    assert engine.requests[0].prompt_token_ids == engine.encode("def add(a, b):")
    assert engine.aborted == [engine.requests[0].request_id]
    # Single-line requests go first.
    assert engine.requests[0].priority == 0


async def test_blank_line_output_not_at_cursor_column_gives_no_suggestion() -> None:
    engine = ScriptedEngine(chunks=["\n", "print(", "1)\n"] + ["x"] * 20)
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        _, done = await _collect(
            quill_pb2_grpc.QuillStub(channel),
            pb.CompleteRequest(prefix="def f():\n    ", mode=pb.COMPLETION_MODE_MULTI_LINE),
        )
    assert done.text == ""
    assert engine.requests[0].prompt_token_ids == ScriptedEngine().encode("def f():")
    assert engine.steps_generated == 2  # gave up as soon as the dedent was visible


async def test_single_line_mid_statement_stops_in_the_engine() -> None:
    engine = ScriptedEngine(chunks=["b", "\nprint(1)"])
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        _, done = await _collect(
            quill_pb2_grpc.QuillStub(channel),
            pb.CompleteRequest(prefix="    return a + ", mode=pb.COMPLETION_MODE_SINGLE_LINE),
        )
    assert done.text == "b"
    assert engine.requests[0].stop == ("\n",)


async def test_single_line_drops_tail_already_after_cursor() -> None:
    engine = ScriptedEngine(chunks=["a, b", ")"])
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        _, done = await _collect(
            quill_pb2_grpc.QuillStub(channel),
            pb.CompleteRequest(prefix="print(", suffix=")\n", mode=pb.COMPLETION_MODE_SINGLE_LINE),
        )
    assert done.text == "a, b"


async def test_multi_line_stops_generation_at_block_end() -> None:
    chunks = [
        "\n",
        "    if n < 2:\n",
        "        return n\n",
        "    return n * 2\n",
        "\n",
        "def other():\n",
    ]
    chunks += ["    pass\n"] * 20
    engine = ScriptedEngine(chunks=chunks)
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        deltas, done = await _collect(
            quill_pb2_grpc.QuillStub(channel),
            pb.CompleteRequest(prefix="def f(n):", mode=pb.COMPLETION_MODE_MULTI_LINE),
        )
    assert done.text == "\n    if n < 2:\n        return n\n    return n * 2"
    assert done.finish_reason == "truncated"
    assert engine.requests[0].priority == 1  # multi-line may wait behind single-line
    # The engine request was closed as soon as the dedented line arrived.
    assert engine.aborted == [engine.requests[0].request_id]
    assert engine.steps_generated == 6
    assert "def other" not in "".join(deltas)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"prefix": "x" * 2000}, "limit"),
        ({"limits": pb.CompletionLimits(max_tokens=5000)}, "max_tokens"),
        ({"limits": pb.CompletionLimits(temperature=3.0)}, "temperature"),
        ({"prefix": "a\x00b"}, "NUL"),
        ({"mode": 7}, "mode"),
    ],
)
async def test_invalid_arguments_get_invalid_argument(request_fields, message) -> None:  # type: ignore[no-untyped-def]
    serving = in_process_serving(ScriptedEngine(), max_context_chars=1000)
    async with serving as address, open_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _collect(quill_pb2_grpc.QuillStub(channel), pb.CompleteRequest(**request_fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


async def test_client_cancellation_aborts_the_engine_request() -> None:
    engine = ScriptedEngine(chunks=["x"] * 200, step_delay_s=0.02)
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        call = quill_pb2_grpc.QuillStub(channel).Complete(
            pb.CompleteRequest(
                prefix="s = '",
                mode=pb.COMPLETION_MODE_SINGLE_LINE,
                limits=pb.CompletionLimits(max_tokens=200),
            )
        )
        async for _ in call:
            break  # the first delta arrived: the user typed on
        call.cancel()
        for _ in range(100):
            if engine.aborted:
                break
            await asyncio.sleep(0.02)
        steps_at_abort = engine.steps_generated
        await asyncio.sleep(0.2)
    assert engine.aborted == [engine.requests[0].request_id]
    assert engine.finished == []
    assert engine.steps_generated == steps_at_abort < 50


async def test_health_and_reflection() -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with (
        in_process_serving(ScriptedEngine()) as address,
        open_channel(address) as channel,
    ):
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="quill.v1.Quill")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests():  # type: ignore[no-untyped-def]
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = []
        async for response in stub.ServerReflectionInfo(requests()):
            names = [s.name for s in response.list_services_response.service]
    assert "quill.v1.Quill" in names


async def test_not_serving_until_engine_loads() -> None:
    import threading

    from quill_cli.launcher import free_port
    from serving.config import EngineConfig, ServingConfig
    from serving.server import serve

    release = threading.Event()

    def slow_engine() -> ScriptedEngine:
        release.wait(10)
        return ScriptedEngine()

    address = f"127.0.0.1:{free_port()}"
    stop = asyncio.Event()
    config = ServingConfig(engine=EngineConfig(model="x"), address=address, metrics_address="")
    task = asyncio.create_task(serve(config, slow_engine, stop=stop))
    try:
        async with open_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(50):
                try:
                    status = (await health.Check(health_pb2.HealthCheckRequest())).status
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _collect(quill_pb2_grpc.QuillStub(channel), pb.CompleteRequest(prefix="x"))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            release.set()
            for _ in range(50):
                status = (await health.Check(health_pb2.HealthCheckRequest())).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.1)
            assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        release.set()
        stop.set()
        await task


async def test_health_stays_responsive_during_a_multi_line_completion_of_a_1_mb_file() -> None:
    from tests.support.health import health_answers_during

    body = "def f(x):\n    y = x + 1\n    return y\n\n\n" * 24_000  # about 1 MB of Python
    prefix = body + "def g(n):\n    if n:"
    chunks = ["\n", "        return 1", "\n", "    return 2", "\n", "x = 1", "\n"]
    engine = ScriptedEngine(chunks=chunks, step_delay_s=0.01)
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        request = pb.CompleteRequest(
            prefix=prefix, language="python", mode=pb.COMPLETION_MODE_MULTI_LINE
        )
        answers, (_, done) = await health_answers_during(
            _collect(quill_pb2_grpc.QuillStub(channel), request), address
        )
    # Cut by syntax as for a small file: the `if` statement's block, then the function's line.
    assert done.text == "\n        return 1\n    return 2"
    cpu = max(c for _, c in answers)
    print(f"{len(answers)} health answers: at most {cpu * 1e3:.0f} ms of serving's CPU in one")
    assert cpu < 0.1
