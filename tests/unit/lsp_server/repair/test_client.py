"""run_repair against a scripted Repair servicer on a real grpc.aio server, answering with Jedi."""

from __future__ import annotations

import asyncio
import sys

import grpc
import pytest

from lsp_server.repair.client import (
    RepairError,
    RepairInputError,
    place_patch,
    run_repair,
)
from lsp_server.repair.jedi_oracle import JediOracle
from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.launcher import free_port
from tests.support.fakes import ScriptedRepair, scripted_repair_serving

BUGGY = """\
import os


def join_all(base, name):
    return os.path.joinn(base, name)


print(join_all("a", "b"))
"""


def _start(text: str = BUGGY, line: int = 4, end_line: int | None = None) -> pb.RepairStart:
    return pb.RepairStart(
        file_path="buggy.py",
        language="python",
        text=text,
        start=pb.Position(line=line),
        end=pb.Position(line=line if end_line is None else end_line),
        budget=2,
    )


@pytest.fixture(scope="module")
def jedi_engine():  # type: ignore[no-untyped-def]
    engine = JediOracle(python=sys.executable, path="/tmp/quill_repair_test.py")
    yield engine
    engine.close()


class SlowEngine:
    """Never answers within any deadline (a hung engine)."""

    async def continuations(self, text, line, column, deadline_s):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)

    async def unresolved_names(self, text, start_line, end_line, deadline_s):  # type: ignore[no-untyped-def]
        await asyncio.sleep(3600)


class CrashingEngine:
    async def continuations(self, text, line, column, deadline_s):  # type: ignore[no-untyped-def]
        raise RuntimeError("engine crashed")

    async def unresolved_names(self, text, start_line, end_line, deadline_s):  # type: ignore[no-untyped-def]
        raise RuntimeError("engine crashed")


def test_place_patch_follows_the_contract() -> None:
    lines = ["a = 1", "b = 2", "c = 3", "d = 4"]
    assert place_patch(lines, 1, 2, "x = a.re") == ("a = 1\nx = a.re\nd = 4", 1, 8)
    assert place_patch(lines, 1, 1, "if a:\n    y") == ("a = 1\nif a:\n    y\nc = 3\nd = 4", 2, 5)
    assert place_patch(lines, 3, 3, "") == ("a = 1\nb = 2\nc = 3\n", 3, 0)
    assert place_patch([*lines, ""], 3, 3, "e") == ("a = 1\nb = 2\nc = 3\ne\n", 3, 1)


async def _repair(address: str, engine, **kwargs):  # type: ignore[no-untyped-def]
    async with open_channel(address) as channel:
        return await run_repair(quill_pb2_grpc.QuillStub(channel), _start(), engine, **kwargs)


async def test_queries_are_answered_by_jedi_on_the_patched_file(jedi_engine) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRepair(
        queries=[
            ("    return os.path.jo", False),
            ("    return os.path.joinn", False),
            ("    return os.path.join(bas", False),
            ("    return os.path.joinn(base, nam)", True),
        ]
    )
    async with scripted_repair_serving(servicer) as address:
        result = await _repair(address, jedi_engine, engine_deadline_s=30.0)
    continuations = [list(answer.continuations) for answer in servicer.answers]
    assert continuations[0] == ["in"]
    assert continuations[1] == []  # os.path has no `joinn`: infeasible
    assert continuations[2] == ["e"]  # the parameter `base`
    assert list(servicer.answers[3].unresolved_names) == ["joinn", "nam"]
    assert not any(answer.unavailable for answer in servicer.answers)
    assert result.queries == 4 and result.engine_unavailable == 0
    assert servicer.starts[0].text == BUGGY


async def test_candidates_are_ranked_valid_first_then_by_score() -> None:
    candidates = [
        pb.RepairCandidate(patch="a", score=-0.1, parses=False, names_resolve=False),
        pb.RepairCandidate(patch="b", score=-2.0, parses=True, names_resolve=True),
        pb.RepairCandidate(patch="c", score=-0.5, parses=True, names_resolve=False),
        pb.RepairCandidate(patch="d", score=-1.0, parses=True, names_resolve=True),
    ]
    seen: list[str] = []
    progress: list[int] = []

    async def on_candidate(candidate: pb.RepairCandidate) -> None:
        seen.append(candidate.patch)

    servicer = ScriptedRepair(candidates=candidates)
    async with scripted_repair_serving(servicer) as address:
        result = await _repair(
            address,
            None,
            on_candidate=on_candidate,
            on_progress=lambda p: progress.append(p.samples_done),
        )
    assert [c.patch for c in result.candidates] == ["d", "b", "c", "a"]
    assert seen == ["a", "b", "c", "d"]  # streamed as they arrived
    assert progress == [0, 2]
    assert result.done is not None and result.done.candidates == 4
    # A repair that finished is closed, not cancelled.
    assert not servicer.cancelled.is_set()


@pytest.mark.parametrize(
    ("text", "line", "end_line", "message"),
    [
        (BUGGY, 40, 40, "past the end of the file"),
        (BUGGY, 3, 2, "not a region"),
        ("", 0, 0, "empty"),
        ("\n  \n", 0, 0, "empty"),
        ("x = 1\x00\n", 0, 0, "NUL"),
    ],
)
async def test_bad_regions_fail_before_serving_is_asked(text, line, end_line, message) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRepair()
    async with (
        scripted_repair_serving(servicer) as address,
        open_channel(address) as channel,
    ):
        with pytest.raises(RepairInputError, match=message):
            await run_repair(quill_pb2_grpc.QuillStub(channel), _start(text, line, end_line), None)
    assert servicer.starts == []


async def test_serving_down_is_a_clear_error() -> None:
    async with open_channel(f"127.0.0.1:{free_port()}") as channel:
        with pytest.raises(RepairError, match="serving is unavailable"):
            await run_repair(quill_pb2_grpc.QuillStub(channel), _start(), None, timeout_s=10)


async def test_serving_refusal_carries_its_reason() -> None:
    servicer = ScriptedRepair(abort=(grpc.StatusCode.INVALID_ARGUMENT, "budget too large"))
    async with scripted_repair_serving(servicer) as address:
        with pytest.raises(RepairError, match="budget too large"):
            await _repair(address, None)


async def test_stream_without_done_is_an_error() -> None:
    servicer = ScriptedRepair(skip_done=True)
    async with scripted_repair_serving(servicer) as address:
        with pytest.raises(RepairError, match="before it finished"):
            await _repair(address, None)


async def test_deadline_of_the_whole_repair() -> None:
    servicer = ScriptedRepair(delay_s=30)
    async with scripted_repair_serving(servicer) as address:
        with pytest.raises(RepairError, match="did not finish within 0.5 s"):
            await _repair(address, None, timeout_s=0.5)


@pytest.mark.parametrize("engine", [SlowEngine(), CrashingEngine(), None])
async def test_engine_that_hangs_or_crashes_answers_unavailable(engine) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRepair(
        queries=[("    return os.pa", False), ("    return os.path", True)],
        candidates=[pb.RepairCandidate(patch="    return os.path.join(base, name)", parses=True)],
    )
    async with scripted_repair_serving(servicer) as address:
        result = await asyncio.wait_for(_repair(address, engine, engine_deadline_s=0.05), 10)
    assert [answer.unavailable for answer in servicer.answers] == [True, True]
    assert result.engine_unavailable == 2
    assert [c.patch for c in result.candidates] == ["    return os.path.join(base, name)"]


class RecordingEngine:
    """Records the order of calls; gets ready only when `prepare` has run."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def prepare(self, timeout_s: float) -> bool:
        self.calls.append("prepare")
        return True

    async def continuations(self, text, line, column, deadline_s):  # type: ignore[no-untyped-def]
        self.calls.append("continuations")
        return ["th"]

    async def unresolved_names(self, text, start_line, end_line, deadline_s):  # type: ignore[no-untyped-def]
        self.calls.append("unresolved_names")
        return []


async def test_an_engine_is_prepared_before_decoding_starts() -> None:
    engine = RecordingEngine()
    servicer = ScriptedRepair(queries=[("    return os.pa", False)])
    async with scripted_repair_serving(servicer) as address:
        await _repair(address, engine)
    assert engine.calls == ["prepare", "continuations"]
    assert list(servicer.answers[0].continuations) == ["th"]


async def test_cancelling_the_repair_cancels_the_call() -> None:
    servicer = ScriptedRepair(delay_s=60)
    async with scripted_repair_serving(servicer) as address:
        task = asyncio.create_task(_repair(address, None))
        await asyncio.wait_for(servicer.started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
