"""Multi-line suggestions streamed through the language server: the first line is answered as
soon as it is written, the block keeps generating, and the follow-up request (after the user
accepts or types that line) is answered from the same generation."""

from __future__ import annotations

import asyncio

import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import ROOT, in_process_serving, lsp_command
from tests.fakes import ScriptedEngine
from tests.lsp_helpers import complete, edit, execute, initialize, open_document

URI = (ROOT / "tests" / "data" / "sample.py").as_uri()
DOCUMENT = "def f(n):"  # the cursor at its end opens a block: multi-line
# One token per chunk; the block ends when `x = 2` starts (dedented), which stops the engine.
BLOCK = ["\n", "    if", " n < 2:", "\n", "        return n", "\n", "    return 1", "\n",
         "x = 2", "\n", "y = 3", "\n"]  # fmt: skip
FIRST_LINE = "\n    if n < 2:"
WHOLE = "\n    if n < 2:\n        return n\n    return 1"
TYPED = "\n    if n < 2:\n        ret"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_first_line_comes_early_and_the_block_follows(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.15)
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address)
        open_document(client, URI, DOCUMENT)
        first = (await complete(client, URI, 0, 9)).items
        assert [item.insert_text for item in first] == [FIRST_LINE]
        assert not engine.finished and not engine.aborted  # still generating the block
        suggestion_id = first[0].command.arguments[0]
        await _until(lambda: engine.finished or engine.aborted)
        # The user accepts the first line; the editor asks again at its end.
        edit(client, URI, 2, (0, 9), (0, 9), FIRST_LINE)
        rest = (await complete(client, URI, 1, 13)).items
        stats = await execute(client, "quill.stats")
    assert [item.insert_text for item in rest] == [WHOLE[len(FIRST_LINE) :]]
    assert rest[0].command.arguments[0] == suggestion_id  # the same suggestion
    assert len(engine.requests) == 1  # no second model call
    assert engine.steps_generated == BLOCK.index("x = 2") + 1  # stopped at the block end
    assert stats["earlyFirstLines"] == 1 and stats["typeAheadHits"] == 1
    # Every token generated went into what was shown (ScriptedEngine: one per chunk).
    assert stats["usedTokens"] == engine.steps_generated


async def test_typing_the_first_line_is_answered_from_the_running_stream(
    client: LanguageClient,
) -> None:
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.15)
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address)
        open_document(client, URI, DOCUMENT)
        first = (await complete(client, URI, 0, 9)).items
        assert not engine.finished
        # Typed past the first line (type-ahead has only that), matching the suggestion.
        edit(client, URI, 2, (0, 9), (0, 9), TYPED)
        second = (await complete(client, URI, 2, 11)).items
        await _until(lambda: engine.finished or engine.aborted)
        stats = await execute(client, "quill.stats")
    text = second[0].insert_text
    # The rest of that line (and any whole lines after it) of the same generation.
    assert text.startswith("urn n") and WHOLE.startswith(TYPED + text), text
    assert second[0].command.arguments[0] == first[0].command.arguments[0]
    assert len(engine.requests) == 1
    # It ran on to its block end (`x = 2`, the 9th token) instead of being thrown away.
    assert engine.steps_generated == BLOCK.index("x = 2") + 1
    assert stats["reusedInFlight"] == 1 and stats["superseded"] == 0


async def test_typing_something_else_stops_the_stream(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.15)
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address)
        open_document(client, URI, DOCUMENT)
        await complete(client, URI, 0, 9)
        edit(client, URI, 2, (0, 9), (0, 9), "\n    while")  # not what the suggestion says
        await complete(client, URI, 1, 9)
        stats = await execute(client, "quill.stats")
    assert engine.aborted[0] == engine.requests[0].request_id  # the stale block was stopped
    assert len(engine.requests) == 2 and stats["superseded"] == 1


async def test_without_streaming_the_whole_block_is_awaited(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.02)
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address, streamFirstLine=False)
        open_document(client, URI, DOCUMENT)
        items = (await complete(client, URI, 0, 9)).items
        stats = await execute(client, "quill.stats")
    assert [item.insert_text for item in items] == [WHOLE]
    assert stats["earlyFirstLines"] == 0


async def test_multi_line_waits_for_a_pause_before_asking(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["1"])
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address, multiLineDelayMs=500)
        open_document(client, URI, DOCUMENT)
        block = asyncio.ensure_future(complete(client, URI, 0, 9))  # multi-line: waits
        await asyncio.sleep(0.1)
        edit(client, URI, 2, (0, 9), (0, 9), " pass")  # the user types on at once
        line = (await complete(client, URI, 0, 14)).items
        assert (await block).items == ()
    # The block was never asked for: the only engine request is the single-line one.
    assert len(engine.requests) == 1 and "\n" in engine.requests[0].stop
    assert [item.insert_text for item in line] == ["1"]
