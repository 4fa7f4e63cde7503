"""A person typing through a real, long-lived `quill lsp` for as long as a soak lasts
(`quill bench load --minutes N`), so the language server's memory can be watched over time.

File after file: open it, type its text (quill_cli/bench/typist.py), ask for inline completions
as an editor does (after its debounce; a newer request supersedes the one in flight), accept
some suggestions through the item's command, then close the file (which frees what the server
kept for it) and go on with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quill_cli.bench.typist import TypingPace, keystrokes
from quill_cli.lsp_client import StdioLanguageClient


@dataclass
class LspTally:
    requests: int = 0
    suggestions: int = 0
    accepted: int = 0
    failures: int = 0
    files: int = 0


class LspTypist:
    def __init__(
        self,
        address: str,
        root: Path,
        number: int,
        sources: list[tuple[str, str]],
        pace: TypingPace,
        debounce_s: float,
        accept_share: float,
        seed: int,
    ) -> None:
        self.client = StdioLanguageClient(root, {"servingAddress": address, "retrieval": True})
        self._root = root
        self._number = number
        self._sources = sources
        self._pace = pace
        self._debounce_s = debounce_s
        self._accept_share = accept_share
        self._rng = random.Random(seed)
        self.tally = LspTally()

    async def run(self, stop: asyncio.Event) -> None:
        await self.client.start()
        try:
            while not stop.is_set():
                head, typed = self._sources[self.tally.files % len(self._sources)]
                path = self._root / f"soak_{self._number}_{self.tally.files}.py"
                path.write_text(head)
                await self._type_file(path, head, typed, stop)
                self.client.close(path.resolve().as_uri())
                path.unlink()
                self.tally.files += 1
        finally:
            await self.client.stop()

    async def _type_file(self, path: Path, head: str, typed: str, stop: asyncio.Event) -> None:
        text = head
        uri = self.client.open(path, text)
        pending: asyncio.Task[None] | None = None
        for key in keystrokes(typed):
            if stop.is_set():
                break
            text += key
            self.client.open(path, text)
            pause = self._pace.pause_after(key, self._rng)
            if pause > self._debounce_s:
                await asyncio.sleep(self._debounce_s)
                lines = text.split("\n")
                pending = asyncio.create_task(self._ask(uri, len(lines) - 1, len(lines[-1])))
                pause -= self._debounce_s
            await asyncio.sleep(pause)
        if pending is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(pending, 30)

    async def _ask(self, uri: str, line: int, character: int) -> None:
        self.tally.requests += 1
        try:
            items = await self.client.inline_completion(uri, line, character, automatic=True)
        except Exception:  # noqa: BLE001 - counted; the soak goes on
            self.tally.failures += 1
            return
        if not items:
            return
        self.tally.suggestions += 1
        command: Any = items[0].command
        if command is not None and self._rng.random() < self._accept_share:
            with contextlib.suppress(Exception):
                await self.client.execute_command(command.command, *(command.arguments or []))
                self.tally.accepted += 1
