"""Runs tests/data/nvim/init.lua, the headless Neovim driver, and reads what it observed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quill import envs
from tests.conftest import ROOT

NVIM = Path(sys.executable).parent / "nvim"
PLUGIN_DIR = ROOT / "editors" / "nvim"
DRIVER = ROOT / "tests" / "data" / "nvim" / "init.lua"
NVIM_TIMEOUT_S = 120


def run_nvim(tmp_path: Path, scenario: str, setup: dict[str, Any], files: list[Path]) -> dict:
    out = tmp_path / f"{scenario}.json"
    params = {
        "plugin_dir": str(PLUGIN_DIR),
        "scenario": scenario,
        "setup": setup,
        "files": [str(f) for f in files],
        "out": str(out),
    }
    env = os.environ.copy()
    env["QUILL_NVIM_PARAMS"] = json.dumps(params)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(tmp_path / name.lower())
    # Neovim's own folders are throwaway, Quill's cache is the user's: the language server finds
    # the local token there, as it does for a user whose serving runs on the same machine.
    env["QUILL_CACHE_DIR"] = str(envs.cache_dir())
    argv = [str(NVIM), "--headless", "--clean", "-u", str(DRIVER)]
    # Its own session, so a timeout kills nvim and the language server it started.
    process = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=NVIM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"nvim did not finish in {NVIM_TIMEOUT_S} s; output:\n{output.decode()}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"nvim exited with {process.returncode}:\n{text}"
    assert out.exists(), f"nvim wrote no observations:\n{text}"
    observations = json.loads(out.read_text())
    assert observations["error"] is None, f"{observations['error']}\nnvim output:\n{text}"
    return observations
