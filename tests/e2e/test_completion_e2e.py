"""Editor path end to end: real language server -> real gRPC serving -> real vLLM engine."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.launcher import ServingProcess
from tests.conftest import ROOT, lsp_command
from tests.support.lsp import complete_at_end, edit, execute, initialize, open_document

pytestmark = pytest.mark.e2e

URI = (ROOT / "tests" / "data" / "e2e_sample.py").as_uri()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _lsp_complete(client: LanguageClient, address: str, text: str, **options):  # type: ignore[no-untyped-def]
    # A loaded CI machine may take seconds per multi-line suggestion.
    await initialize(client, servingAddress=address, requestTimeoutS=120, **options)
    open_document(client, URI, text)
    return (await complete_at_end(client, URI, text)).items


def _metric(url: str, name: str, labels: str = "") -> float:
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


async def test_single_line_completion_is_a_plausible_continuation(
    client: LanguageClient, real_serving: ServingProcess
) -> None:
    text = 'def add(a, b):\n    """Return the sum of a and b."""\n    return a +'
    items = await _lsp_complete(client, real_serving.address, text)
    assert len(items) == 1
    suggestion = items[0].insert_text
    assert "\n" not in suggestion
    assert re.search(r"\bb\b", suggestion), suggestion
    # The accept command counts on the server.
    await execute(client, items[0].command.command, *items[0].command.arguments)
    stats = await execute(client, "quill.stats")
    assert stats["accepted"] == 1 and stats["servingAvailable"]


async def test_multi_line_completion_writes_an_indented_body(
    client: LanguageClient, real_serving: ServingProcess
) -> None:
    text = "def fibonacci(n):"
    items = await _lsp_complete(client, real_serving.address, text, streamFirstLine=False)
    assert len(items) == 1
    body = items[0].insert_text
    lines = [line for line in body.split("\n") if line.strip()]
    assert len(lines) >= 2, body
    assert all(line.startswith("    ") for line in lines), body
    assert "return" in body


async def test_multi_line_first_line_early_then_the_block_from_the_same_generation(
    client: LanguageClient, real_serving: ServingProcess
) -> None:
    text = "def fibonacci(n):"
    # The block goes on generating after the first line, under this deadline: a machine shared
    # with other engines may take minutes.
    await initialize(client, servingAddress=real_serving.address, requestTimeoutS=900)
    open_document(client, URI, text)
    first = (await complete_at_end(client, URI, text)).items
    assert len(first) == 1
    line = first[0].insert_text
    # Only the first line, while the engine is still writing the block.
    assert line.startswith("\n    ") and line.strip() and "\n" not in line.strip(), line
    suggestion_id = first[0].command.arguments[0]
    stats = await execute(client, "quill.stats")
    assert stats["earlyFirstLines"] == 1
    for _ in range(9000):  # the block finishes in the background
        if (await execute(client, "quill.stats"))["streamedBlocks"]:
            break
        await asyncio.sleep(0.1)
    # The user accepts the first line; the editor asks again at its end.
    accepted = text + line
    edit(client, URI, 2, (0, len(text)), (0, len(text)), line)
    rest = (await complete_at_end(client, URI, accepted)).items
    assert len(rest) == 1 and rest[0].command.arguments[0] == suggestion_id
    block = line + rest[0].insert_text
    lines = [x for x in block.split("\n") if x.strip()]
    assert len(lines) >= 2 and all(x.startswith("    ") for x in lines), block
    assert "return" in block
    stats = await execute(client, "quill.stats")
    assert stats["typeAheadHits"] == 1 and stats["superseded"] == 0


async def test_cancel_mid_stream_stops_generation_in_the_engine(
    real_serving: ServingProcess,
) -> None:
    # A line the model extends for as long as it may: counting on from 30.
    prefix = "numbers = [" + ", ".join(str(i) for i in range(1, 31)) + ","
    request = pb.CompleteRequest(
        prefix=prefix,
        mode=pb.COMPLETION_MODE_SINGLE_LINE,
        limits=pb.CompletionLimits(max_tokens=160),
    )
    generated = "vllm:generation_tokens_total"
    async with open_channel(real_serving.address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        # Uncancelled, the same request generates many tokens.
        before = _metric(real_serving.metrics_url, generated)
        done = None
        async for response in stub.Complete(request):
            if response.HasField("done"):
                done = response.done
        assert done is not None and done.completion_tokens >= 100, done
        await asyncio.sleep(1.0)
        full = _metric(real_serving.metrics_url, generated) - before
        assert full >= 100

        aborts_before = _metric(
            real_serving.metrics_url, "quill_engine_aborts_total", 'reason="client_cancelled"'
        )
        before = _metric(real_serving.metrics_url, generated)
        call = stub.Complete(request)
        async for _ in call:
            break  # first text arrived; the user typed on
        call.cancel()
        await asyncio.sleep(1.5)
        after_cancel = _metric(real_serving.metrics_url, generated) - before
        await asyncio.sleep(1.5)
        later = _metric(real_serving.metrics_url, generated) - before
    # The engine stopped: far fewer tokens than the uncancelled run, and no more after the cancel.
    assert after_cancel < full / 3, (after_cancel, full)
    assert later == after_cancel
    assert _metric(real_serving.metrics_url, "vllm:num_requests_running") == 0
    aborts = _metric(
        real_serving.metrics_url, "quill_engine_aborts_total", 'reason="client_cancelled"'
    )
    assert aborts == aborts_before + 1


async def test_invalid_argument_from_the_real_server(real_serving: ServingProcess) -> None:
    async with open_channel(real_serving.address) as channel:
        call = quill_pb2_grpc.QuillStub(channel).Complete(
            pb.CompleteRequest(prefix="x", limits=pb.CompletionLimits(max_tokens=100_000))
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metrics_endpoint_has_quill_and_vllm_series(real_serving: ServingProcess) -> None:
    body = urllib.request.urlopen(real_serving.metrics_url, timeout=10).read().decode()
    for name in (
        "quill_time_to_first_token_seconds_bucket",
        "quill_request_duration_seconds_bucket",
        "quill_rpc_requests_total",
        "quill_engine_ready 1.0",
        "vllm:generation_tokens_total",
        # Measured from vLLM's own per-request timestamps.
        'quill_stage_duration_seconds_count{stage="queue_wait"}',
        'quill_stage_duration_seconds_count{stage="time_to_first_token"}',
    ):
        assert name in body, name


def test_quill_complete_cli_prints_a_completion(real_serving: ServingProcess) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "quill",
            "complete",
            "examples/fibonacci.py:4:18",
            "--address",
            real_serving.address,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "return" in result.stdout
    assert time.monotonic() - started < 120
