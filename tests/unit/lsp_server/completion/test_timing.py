"""When an automatic request asks serving: the user's pauses against serving's answer times."""

from __future__ import annotations

import asyncio
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.completion.timing import (
    AFTER_WORD,
    FRESH_LINE,
    IN_WORD,
    AnswerTimes,
    PauseHistory,
    place_kind,
    wait_before_asking,
    worth_going_on,
)
from lsp_server.methods import INLINE_COMPLETION_REFRESH_CAPABILITY
from tests.conftest import ROOT, in_process_serving, lsp_command
from tests.support.fakes import GatedEngine, ScriptedEngine
from tests.support.lsp import execute, initialize, open_document
from tests.support.manual_clock_lsp import ADVANCE_CLOCK


def test_a_pause_long_enough_for_the_answer_asks_at_once() -> None:
    assert wait_before_asking([1.0] * 10, elapsed=0.2, need=0.5, min_chance=0.5) == 0.0


def test_between_words_a_slow_answer_waits_until_the_pause_is_as_long_as_the_answer() -> None:
    pauses = [0.4, 0.5, 0.45, 0.55, 0.5, 0.6, 0.5, 0.45]
    wait = wait_before_asking(pauses, elapsed=0.2, need=0.8, min_chance=0.5)
    # No pause seen lasts 0.8 s more; past them the heavy tail gives 1/2 at t = need.
    assert wait == pytest.approx(0.8 - 0.2)
    # A higher chance waits longer in the tail: t / (t + need) >= 0.8 at t = 4 * need.
    assert wait_before_asking(pauses, 0.2, 0.8, 0.8) == pytest.approx(3.2 - 0.2)
    assert wait_before_asking(pauses, 0.2, 0.8, 1.0) == pytest.approx(0.8 * 99 - 0.2)


def test_a_request_is_never_held_longer_than_the_longest_hold() -> None:
    """On a slow serving the rule alone waits for a very long pause (here 0.8 s answers at a
    chance of 0.85: the tail is reached at 4.5 s); a user stopped for the longest hold is
    waiting for a suggestion, so it goes out then."""
    pauses = [0.1] * 20
    alone = wait_before_asking(pauses, elapsed=0.2, need=0.8, min_chance=0.85)
    assert alone == pytest.approx(0.8 * 0.85 / 0.15 - 0.2)
    assert wait_before_asking(pauses, 0.2, 0.8, 0.85, longest=1.0) == 1.0
    # A shorter wait than the longest hold is not stretched.
    assert wait_before_asking([1.0] * 10, 0.2, 0.5, 0.85, longest=1.0) == 0.0


def test_the_tail_starts_where_too_few_pauses_are_left_to_count() -> None:
    pauses = [0.1] * 10 + [0.5, 0.6, 0.7, 2.0, 2.1]
    # Counted: at 0.1 s 2 of 5 pauses last 1.5 s more, at 0.5 s 1 of 4, at 0.6 s 0 of 3.
    # From 0.7 s only 2 are longer: the tail, t / (t + 1.5) = 1/2 at t = 1.5 s.
    assert wait_before_asking(pauses, elapsed=0.05, need=1.5, min_chance=0.5) == (
        pytest.approx(1.5 - 0.05)
    )
    # A short answer is counted: at 0.05 s 5 of 15 pauses last 0.3 s more; at 0.1 s, all 5.
    assert wait_before_asking(pauses, elapsed=0.05, need=0.3, min_chance=0.5) == (
        pytest.approx(0.05)
    )


def test_place_kinds() -> None:
    assert place_kind("    ") == FRESH_LINE
    assert place_kind("    total = pri") == IN_WORD
    assert place_kind("    total_") == IN_WORD
    assert place_kind("    total = ") == AFTER_WORD
    assert place_kind("    print(") == AFTER_WORD


def test_a_block_goes_on_while_the_pause_likely_outlasts_its_next_line() -> None:
    pauses = [1.0] * 8
    assert worth_going_on(pauses, elapsed=0.3, need=0.5, min_chance=0.5)
    assert not worth_going_on(pauses, elapsed=0.8, need=0.5, min_chance=0.5)
    # Longer than every pause seen: the tail, 1.5 / (1.5 + 0.5) = 0.75.
    assert worth_going_on(pauses, elapsed=1.5, need=0.5, min_chance=0.7)
    assert not worth_going_on(pauses, elapsed=1.5, need=0.5, min_chance=0.8)


def test_a_block_waits_until_only_stops_to_think_are_left() -> None:
    # Line ends: mostly 1 s, a quarter of them 5 s stops. A block needs 1.2 s to show.
    pauses = [1.0, 1.1, 0.9, 1.0, 1.2, 1.0, 5.0, 5.5]
    wait = wait_before_asking(pauses, elapsed=0.2, need=1.2, min_chance=0.5)
    # At 0.2 s only 2 of 8 pauses last to 1.4 s; at 1.0 s, 2 of the 4 left last to 2.2 s.
    assert wait == pytest.approx(1.0 - 0.2)
    # A single line that shows in 0.5 s goes at once: 7 of 8 pauses last past 0.7 s.
    assert wait_before_asking(pauses, elapsed=0.2, need=0.5, min_chance=0.5) == 0.0


def test_the_chance_asked_for_matters() -> None:
    pauses = [0.5] * 6 + [3.0] * 4  # 40% of pauses are long
    assert wait_before_asking(pauses, elapsed=0.1, need=1.0, min_chance=0.4) == 0.0
    assert wait_before_asking(pauses, elapsed=0.1, need=1.0, min_chance=0.5) == pytest.approx(0.4)


def test_no_history_asks_at_once() -> None:
    assert wait_before_asking([], elapsed=0.0, need=1.0, min_chance=0.5) == 0.0


def test_pause_history_needs_enough_samples_and_falls_back_to_all_kinds() -> None:
    history = PauseHistory(window=4, min_samples=3)
    history.record("in_word", 0.5)
    history.record("in_word", 0.6)
    assert history.samples("in_word") is None
    history.record("fresh_line", 1.0)
    assert sorted(history.samples("fresh_line") or []) == [0.5, 0.6, 1.0]  # all kinds
    for seconds in (0.7, 0.8, 0.9):
        history.record("in_word", seconds)
    assert history.samples("in_word") == [0.6, 0.7, 0.8, 0.9]  # its own, the last 4


def test_answer_times_are_the_upper_quartile_once_there_are_enough() -> None:
    times = AnswerTimes(window=5, min_samples=3)
    times.record(False, 0.2)
    times.record(False, 0.4)
    assert times.typical(False) is None and times.typical(True) is None
    times.record(False, 0.6)
    assert times.typical(False) == pytest.approx(0.5)
    assert times.typical(True) == pytest.approx(0.5)  # a block's first line: like a line
    for seconds in (1.0, 1.2, 1.4):
        times.record(True, seconds)
    assert times.typical(True) == pytest.approx(1.3)  # blocks are timed apart once known


URI = (ROOT / "tests" / "data" / "sample.py").as_uri()
LINE = "total = price"
MANUAL_CLOCK_LSP = [sys.executable, "-m", "tests.support.manual_clock_lsp"]


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


def _type(client: LanguageClient, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def _ask(
    client: LanguageClient, text: str, uri: str = URI
) -> types.InlineCompletionList | None:
    """An automatic (as-you-type) request at the end of the one-line `text`."""
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=0, character=len(text)),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )


@pytest_lsp.fixture(config=ClientServerConfig(server_command=MANUAL_CLOCK_LSP))
async def timed_client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _advance(client: LanguageClient, seconds: float) -> None:
    """Move the server's clock on (tests/support/manual_clock_lsp.py)."""
    await client.protocol.send_request_async(ADVANCE_CLOCK, {"seconds": seconds})


@pytest.mark.parametrize("adaptive", [True, False])
async def test_quick_typing_teaches_the_server_to_hold_automatic_requests_back(
    timed_client: LanguageClient, adaptive: bool
) -> None:
    """The server's clock is the test's: serving answers in exactly 0.2 s, then the user types
    every 0.05 s. Nothing depends on how busy the machine is."""
    client = timed_client
    engine = GatedEngine(chunks=[" *", " 2"])
    async with in_process_serving(engine) as address:
        # The counts below are exact for a chance of 0.5 and no longest hold.
        await initialize(
            client,
            servingAddress=address,
            adaptiveTiming=adaptive,
            minChanceInTime=0.5,
            maxHoldMs=0,
        )
        text = LINE
        open_document(client, URI, text)
        version = 1
        for _ in range(4):  # answers it waited for: serving takes 0.2 s
            version += 1
            text += "s"
            _type(client, version, text)
            asked = engine.arrived
            answer = asyncio.ensure_future(_ask(client, text))
            while engine.arrived == asked:  # the request reached the engine
                await asyncio.sleep(0.01)
            await _advance(client, 0.2)
            engine.gate.set()
            assert (await answer).items
            engine.gate.clear()
            await _advance(client, 0.3)  # the user reads it, then types on
        # From now on serving answers at once but with nothing to show: only held back or not
        # matters (a request that was asked is awaited before the next keystroke).
        engine.chunks = []
        engine.gate.set()
        quick = []
        held_back = 0
        for _ in range(20):  # then keystrokes 0.05 s apart, each followed by a request
            version += 1
            text += "s"
            _type(client, version, text)
            request = asyncio.ensure_future(_ask(client, text))
            await asyncio.sleep(0)  # the request is sent
            stats = await execute(client, "quill.stats")  # and has decided by now
            if stats["heldBack"] == held_back:
                await request
            held_back = stats["heldBack"]
            quick.append(request)
            await _advance(client, 0.05)
        version += 1
        _type(client, version, text + "s")  # the last held request is dropped too
        await asyncio.gather(*quick)
        stats = await execute(client, "quill.stats")
    if adaptive:
        # Soon most pauses are far shorter than an answer: requests wait for a longer pause,
        # and the keystroke that comes first drops them before they cost a token. (With time
        # driven by the test the counts are exact: the first 5 quick requests still go out,
        # while fewer than 6 short pauses are known or the long ones still make up half.)
        assert stats["heldBack"] == 15, stats
        assert len(engine.requests) == 4 + 5
        dropped = [c for c in stats["completions"] if c["outcome"] == "dropped"]
        assert len(dropped) == 15 and all(c["tokens"] == 0 for c in dropped), dropped
        assert {c["place"] for c in stats["completions"]} == {"in_word"}
    else:
        assert stats["heldBack"] == 0
        assert len(engine.requests) == 4 + 20


async def test_a_block_stops_at_a_line_end_when_the_next_line_would_come_too_late(
    client: LanguageClient,
) -> None:
    block = ["\n", "    if", " n < 2:", "\n", "        return n", "\n", "    return 1", "\n",
             "x = 2", "\n"]  # fmt: skip
    engine = ScriptedEngine(chunks=block, step_delay_s=0.15)
    async with in_process_serving(engine) as address:
        capabilities = types.ClientCapabilities(
            experimental={INLINE_COMPLETION_REFRESH_CAPABILITY: True}
        )
        await initialize(
            client, capabilities, servingAddress=address, multiLineDelayMs=0, adaptiveTiming=True
        )
        # This user types on 50 ms after every request (mid-line, where `def f(n):` ends too).
        text = LINE
        open_document(client, URI, text)
        quick = []
        for version in range(2, 10):
            text += "s"
            _type(client, version, text)
            quick.append(asyncio.ensure_future(_ask(client, text)))
            await asyncio.sleep(0.05)
        await asyncio.gather(*quick, return_exceptions=True)
        before, steps_before = len(engine.requests), engine.steps_generated
        block_uri = (ROOT / "tests" / "data" / "block.py").as_uri()
        open_document(client, block_uri, "def f(n):")
        first = (await _ask(client, "def f(n):", block_uri)).items
        for _ in range(300):  # the next line comes, and the block stops there
            if engine.aborted and engine.aborted[-1] == engine.requests[-1].request_id:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        again = (await _ask(client, "def f(n):", block_uri)).items
        stats = await execute(client, "quill.stats")
    assert len(engine.requests) == before + 1
    assert engine.aborted[-1] == engine.requests[-1].request_id  # stopped, not finished
    assert engine.requests[-1].request_id not in engine.finished
    assert [item.insert_text for item in first] == ["\n    if n < 2:"]
    # Its first line took 0.6 s and this user types on within 50 ms: it stopped there, one
    # step into the second line, and that line is the suggestion (same id).
    assert engine.steps_generated - steps_before <= 5
    assert [item.insert_text for item in again] == ["\n    if n < 2:"]
    assert again[0].command.arguments[0] == first[0].command.arguments[0]
    stopped = [c for c in stats["completions"] if c["outcome"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["multiLine"]
