"""A seeded barrage of hostile traffic (tests/support/lsp_fuzz.py) against a real `quill lsp`
subprocess with the real gRPC serving layer on a scripted engine.

What must hold: the server never exits; every request is answered exactly once, with the
outcome its damage calls for; stderr stays small, without tracebacks or source text; each
document the editor still has open is the server's copy too; and a real completion works after.
The figures it prints are the ones in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, in_process_serving
from tests.support.fakes import ScriptedEngine
from tests.support.lsp_fuzz import SOURCE_MARKER, Document, Fuzz, units
from tests.support.raw_lsp import RawLsp, raw_lsp

SEED = 20261201
# The end of a document compared with the end of the prompt serving got.
_COMPARED_TOKENS = 400
MESSAGES = 10_000
# Requests awaiting an answer before the fuzz waits for some.
WINDOW = 300
# The server's stderr after the whole barrage stays under this.
MAX_STDERR_BYTES = 256 * 1024


def _outcome(answer: dict[str, Any]) -> int | None:
    return None if "result" in answer else answer["error"]["code"]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _send_all(server: RawLsp, fuzz: Fuzz) -> tuple[int, int]:
    """Write the barrage, keeping at most WINDOW requests unanswered; (messages, null answers
    expected)."""
    messages = nulls = 0
    outstanding: collections.deque[Any] = collections.deque()
    for piece in fuzz.pieces(MESSAGES):
        await server.send(piece.data)
        messages += piece.messages
        nulls += piece.null_answers
        outstanding.extend(piece.expected)
        while outstanding and outstanding[0] in server.answers:
            outstanding.popleft()
        if len(outstanding) > WINDOW:
            await server.wait_for([outstanding[len(outstanding) - WINDOW // 2]], 60)
        assert server.process.returncode is None, f"the server exited after {messages} messages"
    return messages, nulls


async def _check_copy(server: RawLsp, engine: ScriptedEngine, document: Document) -> None:
    """Append a line to the document, then ask for a completion at its end: the prompt serving
    gets is the editor's text (serving ends a prompt before a blank cursor line, hence the
    line)."""
    lines = document.lines()
    end = {"line": len(lines) - 1, "character": units(lines[-1])}
    document.version += 1
    document.text += "# checked"
    change = {"range": {"start": end, "end": end}, "text": "# checked"}
    await server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": document.uri, "version": document.version},
            "contentChanges": [change],
        },
    )
    asked = len(engine.requests)
    position = {"line": end["line"], "character": end["character"] + len("# checked")}
    params = {
        "textDocument": {"uri": document.uri},
        "position": position,
        "context": {"triggerKind": 1},
    }
    answer = await server.request("textDocument/inlineCompletion", params)
    assert "result" in answer, answer
    # The prompt ends with the editor's text (other open documents may come before it as
    # context snippets, and a long document's head may be cut to the budget). The scripted
    # engine's tokens are characters, so the comparison is on them.
    prompts = [list(request.prompt_token_ids) for request in engine.requests[asked:]]
    tail = engine.encode(document.text)[-_COMPARED_TOKENS:]
    assert any(prompt[-len(tail) :] == tail for prompt in prompts), (
        f"{document.uri} diverged: the server has "
        f"{engine.decode(prompts[-1])[-80:] if prompts else None!r}, "
        f"the editor {document.text[-80:]!r}"
    )


async def test_a_barrage_of_bad_input_leaves_the_server_answering_everything() -> None:
    engine = ScriptedEngine(chunks=["a + b"], max_model_len=4096)
    async with in_process_serving(engine) as address:
        arguments = ("--address", address, "--max-body-bytes", "65536")
        async with raw_lsp(*arguments) as server:
            await server.initialize(multiLineDelayMs=0, adaptiveTiming=False)
            own = {None, *server.answers}  # null answers are counted below
            fuzz = Fuzz(SEED, (ROOT / "tests" / "data").as_uri())
            started = time.perf_counter()
            messages, nulls = await _send_all(server, fuzz)
            await server.wait_for(list(fuzz.expected), 60)
            seconds = time.perf_counter() - started
            assert server.process.returncode is None

            unanswered = [i for i in fuzz.expected if i not in server.answers]
            twice = [i for i, answers in server.answers.items() if i and len(answers) > 1]
            wrong = {
                i: (_outcome(server.answers[i][0]), sorted(map(str, outcomes)))
                for i, outcomes in fuzz.expected.items()
                if i in server.answers and _outcome(server.answers[i][0]) not in outcomes
            }
            strays = [i for i in server.answers if i not in fuzz.expected and i not in own]
            assert unanswered == [], f"{len(unanswered)} unanswered, e.g. {unanswered[:5]}"
            assert twice == [] and strays == []
            assert wrong == {}, f"{len(wrong)} wrong answers, e.g. {list(wrong.items())[:5]}"
            assert len(server.answers.get(None, [])) == nulls

            await asyncio.sleep(1)  # calls still streaming after their answer end
            checked = 0
            for document in fuzz.documents:
                # Binary documents (NUL) get no completions, so nothing to compare.
                if document.state == "open" and "\x00" not in document.text:
                    await _check_copy(server, engine, document)
                    checked += 1
            assert checked >= 1

            # Still completing through serving, as it did before the barrage.
            uri = (ROOT / "tests" / "data" / "after_fuzz.py").as_uri()
            item = {"uri": uri, "languageId": "python", "version": 1}
            item["text"] = "def add(a, b):\n    return "
            await server.notify("textDocument/didOpen", {"textDocument": item})
            params = {
                "textDocument": {"uri": uri},
                "position": {"line": 1, "character": 11},
                "context": {"triggerKind": 1},
            }
            answer = await server.request("textDocument/inlineCompletion", params)
            assert [i["insertText"] for i in answer["result"]["items"]] == ["a + b"]

            peak_rss = _peak_rss_mb(server.process.pid)
            assert await server.end() == 0
            stderr = server.stderr()
    stderr_bytes = len(stderr.encode())
    print(
        f"\nfuzz: {messages} messages, {len(fuzz.expected)} requests, {seconds:.1f} s, "
        f"0 exits, {len(unanswered)} unanswered, peak RSS {peak_rss:.0f} MB, "
        f"stderr {stderr_bytes} bytes in {stderr.count(chr(10))} lines, "
        f"{checked} documents checked against the editor's copy"
    )
    assert stderr_bytes < MAX_STDERR_BYTES
    assert "Traceback" not in stderr
    assert "handler failed" not in stderr  # notifications' handlers: nobody else would know
    assert SOURCE_MARKER not in stderr
