"""`quill lsp` as a subprocess spoken to in raw bytes, for tests that break the protocol on
purpose (pytest-lsp's client only sends well-formed messages)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, lsp_command
from tests.support.lsp_fuzz import encode, frame


class RawLsp:
    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr_path = stderr
        # Every message the server sent, and the answers by id (a list: one is expected).
        self.messages: list[dict[str, Any]] = []
        self.answers: defaultdict[Any, list[dict[str, Any]]] = defaultdict(list)
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self._next_id = 0

    async def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = 0
            while True:
                line = await stream.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                elif line == b"\r\n":
                    break
            message = json.loads(await stream.readexactly(length))
            self.messages.append(message)
            if "method" not in message:
                self.answers[message.get("id")].append(message)
            self._arrived.set()

    async def send(self, data: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(data)
        await stdin.drain()

    async def notify(self, method: str, params: Any = None) -> None:
        await self.send(frame(encode({"jsonrpc": "2.0", "method": method, "params": params})))

    async def request(self, method: str, params: Any = None, timeout: float = 20) -> Any:
        """Send a request and wait for its answer (the whole answer message)."""
        self._next_id += 1
        msg_id = f"raw-{self._next_id}"
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
        await self.send(frame(encode(message)))
        await self.wait_for([msg_id], timeout)
        return self.answers[msg_id][0]

    async def wait_for(self, ids: list[Any], timeout: float) -> None:
        """Until every id in `ids` has an answer, or `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while any(msg_id not in self.answers for msg_id in ids):
            self._arrived.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def initialize(self, **options: Any) -> None:
        options.setdefault("retrieval", False)
        params = {
            "processId": None,
            "rootUri": ROOT.as_uri(),
            "capabilities": {},
            "initializationOptions": options,
        }
        answer = await self.request("initialize", params)
        assert "result" in answer, answer
        await self.notify("initialized", {})

    async def end(self) -> int:
        """shutdown, exit; the exit code."""
        await self.request("shutdown")
        await self.notify("exit")
        return await asyncio.wait_for(self.process.wait(), 20)

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


@contextlib.asynccontextmanager
async def raw_lsp(*arguments: str) -> AsyncIterator[RawLsp]:
    with tempfile.TemporaryDirectory(prefix="quill-raw-lsp-") as folder:
        stderr_path = Path(folder) / "stderr"
        with stderr_path.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *lsp_command(*arguments),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=2**20,
            )
        client = RawLsp(process, stderr_path)
        try:
            yield client
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            client._reader.cancel()
