"""Multi-line suggestions streamed through the language server: the first line is answered as
soon as it is written, the block keeps generating, and the follow-up request (after the user
accepts or types that line) is answered from the same generation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest_lsp
from lsprotocol.types import ClientCapabilities
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.methods import INLINE_COMPLETION_REFRESH, INLINE_COMPLETION_REFRESH_CAPABILITY
from tests.conftest import ROOT, in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete, edit, execute, initialize, open_document

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


def _refreshes(client: LanguageClient) -> list[str]:
    """The uris of the refresh notifications the client gets, as they come."""
    refreshed: list[str] = []

    @client.feature(INLINE_COMPLETION_REFRESH)
    def on_refresh(params: Any) -> None:
        refreshed.append(params.textDocument.uri)

    return refreshed


async def test_a_client_that_takes_refreshes_is_shown_each_line_as_it_comes(
    client: LanguageClient,
) -> None:
    refreshed = _refreshes(client)
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.15)
    async with in_process_serving(engine) as address:
        capabilities = ClientCapabilities(experimental={INLINE_COMPLETION_REFRESH_CAPABILITY: True})
        await initialize(client, capabilities, servingAddress=address)
        open_document(client, URI, DOCUMENT)
        first = (await complete(client, URI, 0, 9)).items
        assert [item.insert_text for item in first] == [FIRST_LINE]
        await _until(lambda: len(refreshed) >= 1)
        # Asked again at the same place, as the refresh says: more of the same generation.
        grown = (await complete(client, URI, 0, 9)).items
        assert not engine.finished  # lines went out while the block was still generating
        await _until(lambda: engine.finished or engine.aborted)
        await _until(lambda: len(refreshed) >= 2)
        whole = (await complete(client, URI, 0, 9)).items
        stats = await execute(client, "quill.stats")
    assert set(refreshed) == {URI}
    text = grown[0].insert_text
    assert text.startswith(FIRST_LINE + "\n") and WHOLE.startswith(text), text
    assert [item.insert_text for item in whole] == [WHOLE]
    assert {item.command.arguments[0] for item in (*first, *grown, *whole)} == {
        first[0].command.arguments[0]
    }
    assert len(engine.requests) == 1  # no second model call
    assert stats["usedTokens"] == engine.steps_generated  # every token reached the screen
    assert stats["refreshesSent"] == len(refreshed)


async def test_a_client_without_the_capability_gets_no_refresh(client: LanguageClient) -> None:
    refreshed = _refreshes(client)
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.02)
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address)
        open_document(client, URI, DOCUMENT)
        await complete(client, URI, 0, 9)
        await _until(lambda: engine.finished or engine.aborted)
        stats = await execute(client, "quill.stats")
    assert refreshed == [] and stats["refreshesSent"] == 0


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


async def test_a_keystroke_that_contradicts_the_block_stops_it_before_the_next_request(
    client: LanguageClient,
) -> None:
    engine = ScriptedEngine(chunks=BLOCK, step_delay_s=0.15)
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address)
        open_document(client, URI, DOCUMENT)
        await complete(client, URI, 0, 9)  # the first line is on screen; the block goes on
        edit(client, URI, 2, (0, 9), (0, 9), "\n    if n <")  # agrees with it: it goes on
        edit(client, URI, 3, (1, 8), (1, 8), "=")  # `if n <=`: no longer what it says
        await _until(lambda: bool(engine.aborted))
        stats = await execute(client, "quill.stats")
    # Stopped by the keystroke itself: no inline completion request came after the edits.
    assert engine.aborted == [engine.requests[0].request_id] and len(engine.requests) == 1
    assert not engine.finished
    assert stats["cancelledOnChange"] == 1 and stats["superseded"] == 1


async def test_a_keystroke_during_a_blocks_wait_drops_it_unasked(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=BLOCK)
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address, multiLineDelayMs=500)
        open_document(client, URI, DOCUMENT)
        block = asyncio.ensure_future(complete(client, URI, 0, 9))  # waits for a pause
        await asyncio.sleep(0.1)
        edit(client, URI, 2, (0, 9), (0, 9), "\n")  # the user types on
        assert (await block).items == ()
        await asyncio.sleep(0.6)  # past the wait: it must not ask now
        stats = await execute(client, "quill.stats")
    assert engine.requests == [] and stats["cancelledOnChange"] == 1


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
