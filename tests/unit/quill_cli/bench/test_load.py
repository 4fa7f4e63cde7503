"""`quill bench load`'s parts: a gRPC editor against the real serving layer (scripted engine),
the bare baseline server, and the figures a step reports."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.bench.grpc_editor import Call, EditorSettings, GrpcEditor
from quill_cli.bench.load import _call_figures
from quill_cli.bench.typist import TypingPace, keystrokes
from quill_cli.launcher import free_port, wait_for_serving
from tests.conftest import in_process_serving
from tests.support.fakes import ScriptedEngine

HEAD = "def area(r):\n    return 3.14 * r * r\n\n"
TYPED = "def perimeter(r):\n    return 2 * 3.14 * r\n\ndef volume(r):\n    return r ** 3\n" * 5


def test_enter_brings_the_next_lines_indentation() -> None:
    assert list(keystrokes("a:\n    b")) == ["a", ":", "\n    ", "b"]


async def test_an_editor_types_asks_cancels_syncs_and_reports() -> None:
    engine = ScriptedEngine(chunks=[" 2", " *", " r", "\n"], step_delay_s=0.02, max_model_len=4096)
    settings = EditorSettings(
        pace=TypingPace(cps=30, line_pause=1.0, word_pause=0.1, jitter=0.3),
        debounce_s=0.05,
        accept_share=0.5,
    )
    async with in_process_serving(engine) as address, open_channel(address) as channel:
        editor = GrpcEditor(channel, "ws-load", "shapes.py", HEAD, TYPED, settings, seed=1)
        stop = asyncio.Event()
        running = asyncio.create_task(editor.run(stop))
        await asyncio.sleep(6)
        stop.set()
        await asyncio.wait_for(running, 10)
        stub = quill_pb2_grpc.QuillStub(channel)
        status = (await stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id="ws-load"))).status
    outcomes = {call.outcome for call in editor.tally.calls}
    assert {"ok", "cancelled"} <= outcomes, outcomes  # answers, and calls the next key cancelled
    assert not outcomes - {"ok", "cancelled", "stopped"}
    assert editor.tally.syncs >= 1 and status.files_indexed + status.files_pending >= 1
    tally = editor.tally
    (instance,) = tally.events_recorded
    assert tally.events_recorded[instance] + tally.events_rejected == tally.events_sent > 0
    assert tally.events_rejected == 0  # every event names a suggestion serving issued
    assert len(engine.aborted) >= 1  # a cancelled call aborted its engine request


async def test_the_bare_server_streams_the_shape_it_is_given() -> None:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "quill_cli.bench.bare_server", "--address", address,
         "--ttft-ms", "5", "--tpot-ms", "2", "--single-tokens", "6", "--single-messages", "3"]
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_serving, address, 60, process)
        async with open_channel(address) as channel:
            stub = quill_pb2_grpc.QuillStub(channel)
            request = pb.CompleteRequest(mode=pb.COMPLETION_MODE_SINGLE_LINE)
            responses = [r async for r in stub.Complete(request)]
    finally:
        process.terminate()
        process.wait(30)
    assert [r.HasField("delta") for r in responses] == [True, True, True, False]
    assert responses[-1].done.completion_tokens == 6 and responses[-1].done.serving_instance


def test_step_figures_take_the_engines_own_pace_off() -> None:
    calls = [
        Call(False, keystroke_at=0.0, sent_at=0.2, outcome="ok", done_at=0.2 + 0.1, tokens=11),
        Call(False, keystroke_at=1.0, sent_at=1.2, outcome="ok", done_at=1.2 + 0.08, tokens=6),
        Call(True, keystroke_at=2.0, sent_at=2.2, outcome="cancelled"),
        Call(False, keystroke_at=3.0, sent_at=3.2, outcome="UNAVAILABLE"),
    ]
    figures = _call_figures(calls, window=2.0, pace=(40.0, 6.0))
    assert figures["completions"] == 2 and figures["completions_per_s"] == 1.0
    assert figures["cancelled_share"] == 0.25
    assert figures["errors_by_code"] == {"UNAVAILABLE": 1}
    # 100 ms for 11 tokens at 40 + 10 x 6 ms: 0 added; 80 ms for 6 tokens at 40 + 5 x 6: 10.
    assert figures["added_p50_ms"] == pytest.approx(5.0, abs=0.1)
    assert figures["keystroke_to_suggestion_p95_ms"] == pytest.approx(299.0, abs=1.0)
