"""`quill repair` as a subprocess (through a real `quill lsp`), against a scripted servicer."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from quill.v1 import quill_pb2 as pb
from quill_cli.commands.repair import candidate_diff
from quill_cli.launcher import free_port
from tests.support.fakes import ScriptedRepair, scripted_repair_serving

BUGGY = """\
import os


def join_all(base, name):
    return os.path.joinn(base, name)
"""
FIX = "    return os.path.join(base, name)"


async def _quill_repair(*args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quill",
        "repair",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def test_candidate_diff_is_a_unified_diff() -> None:
    diff = candidate_diff(BUGGY, 4, 4, FIX, "buggy.py")
    assert diff.startswith("--- a/buggy.py\n+++ b/buggy.py\n")
    assert "-    return os.path.joinn(base, name)\n+    return os.path.join(base, name)\n" in diff
    assert candidate_diff(BUGGY, 4, 4, "    return os.path.joinn(base, name)", "b.py") == ""


async def test_prints_ranked_diffs_and_writes_json(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    servicer = ScriptedRepair(
        queries=[("    return os.path.jo", False)],
        candidates=[
            pb.RepairCandidate(patch="    return os.path.joinn(base)", score=-0.1, parses=True),
            pb.RepairCandidate(patch=FIX, score=-0.7, parses=True, names_resolve=True),
        ],
    )
    async with scripted_repair_serving(servicer) as address:
        code, out, err = await _quill_repair(
            "buggy.py:5", "--budget", "4", "--json", "out.json", "--address", address,
            "--engine-deadline", "30", cwd=tmp_path,
        )  # fmt: skip
    assert code == 0, err
    assert list(servicer.answers[0].continuations) == ["in"]  # Jedi in the language server
    assert servicer.starts[0].budget == 4 and servicer.starts[0].start.line == 4
    first, second = out.split("# candidate 2 of 2")
    assert first.startswith("# candidate 1 of 2: score -0.700, parses, names resolve\n")
    assert "+    return os.path.join(base, name)" in first
    assert "+    return os.path.joinn(base)" in second
    assert "2 candidate" in err
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["file"] == "buggy.py" and written["line"] == 5
    assert [c["patch"] for c in written["candidates"]] == [FIX, "    return os.path.joinn(base)"]
    assert written["candidates"][0]["diff"].startswith("--- a/buggy.py")


async def test_unguided_and_region(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    servicer = ScriptedRepair()
    async with scripted_repair_serving(servicer) as address:
        code, out, err = await _quill_repair(
            "buggy.py:4", "--end-line", "5", "--unguided", "--address", address, cwd=tmp_path
        )
    assert code == 1 and "no candidate" in err  # exit 1: nothing found
    start = servicer.starts[0]
    assert start.unguided and (start.start.line, start.end.line) == (3, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["buggy.py:40"], "past the end of the file"),
        (["empty.py:1"], "empty"),
        (["missing.py:1"], "cannot read"),
        (["buggy.py:5", "--end-line", "2"], "before line"),
        (["buggy.py"], "FILE:LINE"),
    ],
)
async def test_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    (tmp_path / "empty.py").write_text("")
    servicer = ScriptedRepair()
    async with scripted_repair_serving(servicer) as address:
        code, _, err = await _quill_repair(*args, "--address", address, cwd=tmp_path)
    assert code == 2 and message in err
    assert servicer.starts == []


async def test_serving_down(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    code, _, err = await _quill_repair(
        "buggy.py:5", "--address", f"127.0.0.1:{free_port()}", cwd=tmp_path
    )
    assert code == 1 and "unavailable" in err


async def test_test_command_ranks_passing_candidates_and_insert_places_new_lines(
    tmp_path: Path,
) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    (tmp_path / "test_buggy.py").write_text(
        "from buggy import join_all\n\nassert join_all('a', 'b') == 'a/b'\n"
    )
    servicer = ScriptedRepair(
        candidates=[
            pb.RepairCandidate(
                patch="    return base + name", score=-0.1, parses=True, names_resolve=True
            ),
            pb.RepairCandidate(patch=FIX, score=-0.7, parses=True, names_resolve=True),
        ]  # fmt: skip
    )
    async with scripted_repair_serving(servicer) as address:
        code, out, err = await _quill_repair(
            "buggy.py:5", "--test", f"{sys.executable} test_buggy.py", "--json", "out.json",
            "--address", address, "--engine-deadline", "30", cwd=tmp_path,
        )  # fmt: skip
        assert code == 0, err
        assert "AttributeError" in servicer.starts[0].failing_test_output
        assert out.startswith("# candidate 1 of 2: score -0.700, parses, names resolve, tests pass")
        assert "tests pass on 1 of 2" in err
        written = json.loads((tmp_path / "out.json").read_text())
        assert [c["testsPass"] for c in written["candidates"]] == [True, False]

        code, out, err = await _quill_repair(
            "buggy.py:4", "--insert", "--address", address, "--engine-deadline", "30",
            cwd=tmp_path,
        )  # fmt: skip
    assert code == 0, err
    assert servicer.starts[1].insert and servicer.starts[1].start.line == 3
    # The diff inserts after line 4 and removes nothing.
    assert " def join_all(base, name):\n+    return base + name\n     return os.path.joinn" in out
    assert "\n-    " not in out


async def test_bad_test_options(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY)
    code, _, err = await _quill_repair("buggy.py:4", "--insert", "--end-line", "5", cwd=tmp_path)
    assert code == 2 and "--insert goes after one line" in err
    code, _, err = await _quill_repair("buggy.py:4", "--test-timeout", "0", cwd=tmp_path)
    assert code == 2 and "must be positive" in err
