"""The language server as a subprocess over stdio, driven by pytest-lsp, against the real gRPC
serving layer hosting a scripted engine (the real engine is covered in tests/e2e)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import ROOT, in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete, edit, execute, initialize, open_document

URI = (ROOT / "tests" / "data" / "sample.py").as_uri()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _initialize(client: LanguageClient, **options) -> types.InitializeResult:  # type: ignore[no-untyped-def]
    return await initialize(client, **options)


def _open(client: LanguageClient, text: str, uri: str = URI) -> None:
    open_document(client, uri, text)


async def _complete(client: LanguageClient, line: int, character: int, uri: str = URI):  # type: ignore[no-untyped-def]
    return await complete(client, uri, line, character)


async def test_advertises_inline_completion_and_commands(client: LanguageClient) -> None:
    result = await _initialize(client, servingAddress="127.0.0.1:9")
    assert result.capabilities.inline_completion_provider is not None
    assert result.capabilities.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert "quill.acceptCompletion" in result.capabilities.execute_command_provider.commands


async def test_completion_through_serving_and_accept(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["a + b", "\n"])
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address)
        _open(client, "def add(a, b):\n    return \n")
        result = await _complete(client, 1, 11)
        assert [item.insert_text for item in result.items] == ["a + b"]
        item = result.items[0]
        assert item.range.start == types.Position(line=1, character=11)
        # The request carried the text around the cursor, in single-line mode (mid-statement).
        request_prefix = engine.requests[0].prompt_token_ids
        assert request_prefix == engine.encode("def add(a, b):\n    return ")
        assert engine.requests[0].stop == ("\n",)
        await execute(client, item.command.command, *item.command.arguments)
        stats = await execute(client, "quill.stats")
    assert stats["accepted"] == 1
    assert stats["acceptedChars"] == len("a + b")
    assert stats["shown"] == 1


async def test_incremental_edits_are_applied(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["42"])
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address)
        _open(client, "x = \n")
        edit(client, URI, 2, (0, 0), (0, 1), "answer")
        result = await _complete(client, 0, 9)
    assert result.items[0].insert_text == "42"
    assert engine.requests[0].prompt_token_ids == engine.encode("answer = ")


async def test_position_past_end_is_an_invalid_params_error(client: LanguageClient) -> None:
    await _initialize(client, servingAddress="127.0.0.1:9")
    _open(client, "x = 1\n")
    with pytest.raises(JsonRpcException) as caught:
        await _complete(client, 5, 0)
    assert "past the end" in str(caught.value)
    with pytest.raises(JsonRpcException):
        await _complete(client, 0, 50)
    # Still serving: a valid request is answered.
    assert (await _complete(client, 0, 5)).items == ()


async def test_unknown_uri_binary_and_oversized_documents_get_no_items(
    client: LanguageClient,
) -> None:
    engine = ScriptedEngine(chunks=["1"])
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address, maxDocumentBytes=1000)
        assert (await _complete(client, 0, 0, uri="file:///nowhere/unknown.py")).items == ()
        _open(client, "data = '\x00\x01'\n", uri=URI + "bin")
        assert (await _complete(client, 0, 3, uri=URI + "bin")).items == ()
        _open(client, "x = 1\n" * 1000, uri=URI + "big")
        assert (await _complete(client, 0, 3, uri=URI + "big")).items == ()
        # None of these reached the engine, and the server still completes normal files.
        assert engine.requests == []
        _open(client, "y = ")
        assert (await _complete(client, 0, 4)).items[0].insert_text == "1"


async def test_bad_settings_reported_once_and_defaults_kept(client: LanguageClient) -> None:
    await _initialize(
        client, completionMode="sideways", maxTokens="lots", servingAddress="127.0.0.1:9"
    )
    await asyncio.sleep(0.2)
    settings_messages = [m.message for m in client.messages if "settings" in m.message]
    assert len(settings_messages) == 1
    assert "completionMode" in settings_messages[0] and "maxTokens" in settings_messages[0]


async def test_serving_down_gives_empty_answers_one_message_and_reconnects(
    client: LanguageClient,
) -> None:
    from quill_cli.launcher import free_port

    port = free_port()
    await _initialize(client, servingAddress=f"127.0.0.1:{port}")
    _open(client, "x = ")
    for _ in range(5):
        assert (await _complete(client, 0, 4)).items == ()
    await asyncio.sleep(0.3)
    unavailable = [m for m in client.messages if "unavailable" in m.message]
    assert len(unavailable) == 1  # told once, not once per request

    # Serving comes up on that address: the server reconnects by itself (backoff probe).
    from serving.config import EngineConfig, ServingConfig
    from serving.server import serve

    stop = asyncio.Event()
    config = ServingConfig(
        engine=EngineConfig(model="x"), address=f"127.0.0.1:{port}", metrics_address=""
    )
    task = asyncio.create_task(serve(config, lambda: ScriptedEngine(chunks=["1"]), stop=stop))
    try:
        items: list = []
        for _ in range(80):
            await asyncio.sleep(0.25)
            items = (await _complete(client, 0, 4)).items
            if items:
                break
        assert items and items[0].insert_text == "1"
        assert any("connected" in m.message for m in client.messages)
    finally:
        stop.set()
        await task


async def test_cancel_request_cancels_the_rpc(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["x"] * 300, step_delay_s=0.02)
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address, maxTokens=300)
        _open(client, "s = '")
        future = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=types.Position(line=0, character=5),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked
                ),
            ),
            msg_id="to-cancel",
        )
        while not engine.steps_generated:
            await asyncio.sleep(0.01)
        client.cancel_request(types.CancelParams(id="to-cancel"))
        for _ in range(100):
            if engine.aborted:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(asyncio.wrap_future(future), 5)
    assert engine.aborted == [engine.requests[0].request_id]
    assert engine.steps_generated < 100


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _read_message(stream) -> dict:  # type: ignore[no-untyped-def]
    length = 0
    while True:
        line = stream.readline()
        if not line:
            raise EOFError("server closed stdout")
        if line.startswith(b"Content-Length:"):
            length = int(line.split(b":")[1])
        elif line == b"\r\n":
            return json.loads(stream.read(length))


def test_raw_protocol_errors_do_not_kill_the_server() -> None:
    """Requests before initialize, invalid UTF-8 and malformed JSON, over a raw byte pipe."""
    process = subprocess.Popen(
        [*lsp_command(), "--address", "127.0.0.1:9"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdin is not None and process.stdout is not None
        early = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "textDocument/inlineCompletion",
            "params": {
                "textDocument": {"uri": URI},
                "position": {"line": 0, "character": 0},
                "context": {"triggerKind": 1},
            },
        }
        process.stdin.write(_frame(json.dumps(early).encode()))
        process.stdin.flush()
        reply = _read_message(process.stdout)
        assert reply["id"] == 1 and reply["error"]["code"] == -32002

        process.stdin.write(
            _frame(
                b'{"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"x": "\xff\xfe"}}'
            )
        )
        process.stdin.write(_frame(b"{not json"))
        init = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {}},
        }
        process.stdin.write(_frame(json.dumps(init).encode()))
        process.stdin.flush()
        while True:
            reply = _read_message(process.stdout)
            if reply.get("id") == 3:
                break
        assert "capabilities" in reply["result"]
    finally:
        process.kill()
        process.wait()


def test_language_server_imports_no_heavy_modules() -> None:
    code = (
        "import sys, lsp_server.app as s; s.create_server();"
        "import quill_cli.main;"
        "heavy = [m for m in ('vllm', 'torch', 'faiss', 'sentence_transformers', 'transformers')"
        " if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_acceptance_and_typing_reach_serving_metrics(client: LanguageClient) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    labels = {"language": "rust", "mode": "single"}
    before = {
        name: value(name, **labels)
        for name in (
            "quill_suggestions_shown_total",
            "quill_suggestions_accepted_total",
            "quill_suggestion_chars_accepted_total",
            "quill_suggestions_partially_accepted_total",
            "quill_suggestions_rejected_total",
        )
    }
    typed_before = value("quill_chars_typed_total", language="rust")
    engine = ScriptedEngine(chunks=["a + b"])
    uri = URI + ".rs"
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address)
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="rust", version=1, text="let x = "
                )
            )
        )
        first = (await _complete(client, 0, 8, uri=uri)).items[0]
        # The user types something else; the next request's suggestion supersedes the first
        # (rejected). (Asked again at the same place, the first would come back, unchanged.)
        edit(client, uri, 2, (0, 8), (0, 8), "y")
        second = (await _complete(client, 0, 9, uri=uri)).items[0]
        # Copilot-style partial accept, then the full accept command.
        client.protocol.notify(
            "textDocument/didPartiallyAcceptCompletion",
            {"item": {"insertText": second.insert_text,
                      "command": {"title": "", "command": second.command.command,
                                  "arguments": second.command.arguments}},
             "acceptedLength": 2},
        )  # fmt: skip
        await execute(client, second.command.command, *second.command.arguments)
        edit(client, uri, 3, (0, 9), (0, 9), ";")
        for _ in range(40):  # events are batched every 2 s
            await asyncio.sleep(0.25)
            if value("quill_chars_typed_total", language="rust") >= typed_before + 2:
                break
    assert first.command.arguments[0] != second.command.arguments[0]

    def delta(name: str) -> float:
        return value(name, **labels) - before[name]

    assert delta("quill_suggestions_shown_total") == 2
    assert delta("quill_suggestions_rejected_total") == 1
    assert delta("quill_suggestions_partially_accepted_total") == 1
    assert delta("quill_suggestions_accepted_total") == 1
    assert delta("quill_suggestion_chars_accepted_total") == len("a + b")
    assert value("quill_chars_typed_total", language="rust") == typed_before + 2


async def test_a_slow_request_times_out_without_declaring_an_outage(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["x"] * 50, step_delay_s=0.05)
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address, requestTimeoutS=0.3, maxTokens=50)
        _open(client, "s = '")
        assert (await _complete(client, 0, 5)).items == ()
        stats = await execute(client, "quill.stats")
    assert stats["servingAvailable"] is True
    assert not [m for m in client.messages if "unavailable" in m.message]
    assert engine.aborted  # the deadline cancelled the engine request too


def _type(client: LanguageClient, text: str, line: int, character: int, version: int) -> None:
    edit(client, URI, version, (line, character), (line, character), text)


async def test_type_ahead_is_answered_without_the_model(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["foo(bar)"])
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address)
        _open(client, "x = ")
        first = (await _complete(client, 0, 4)).items[0]
        assert first.insert_text == "foo(bar)"
        _type(client, "fo", 0, 4, 2)  # the user types what the suggestion shows
        second = (await _complete(client, 0, 6)).items[0]
        assert second.insert_text == "o(bar)"
        assert second.command.arguments[0] == first.command.arguments[0]  # same suggestion
        assert len(engine.requests) == 1  # no new model call
        _type(client, "x", 0, 6, 3)  # typing something else: back to the model
        await _complete(client, 0, 7)
        assert len(engine.requests) == 2
        stats = await execute(client, "quill.stats")
    assert stats["typeAheadHits"] == 1


async def test_newer_request_supersedes_the_one_in_flight(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["x"] * 100, step_delay_s=0.03)
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address, maxTokens=100)
        _open(client, "s = '")
        older = asyncio.ensure_future(_complete(client, 0, 5))
        while not engine.steps_generated:
            await asyncio.sleep(0.01)
        _type(client, "#", 0, 0, 2)  # an edit elsewhere: the suggestion in flight is stale
        newer = asyncio.ensure_future(_complete(client, 0, 6))
        assert (await older).items == ()  # superseded: answered with nothing
        await newer
    assert engine.aborted[0] == engine.requests[0].request_id
    assert len(engine.requests) == 2


async def test_debounce_skips_the_model_for_superseded_keystrokes(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["1"])
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address, debounceMs=300)
        _open(client, "x = ")
        first = asyncio.ensure_future(_complete(client, 0, 4))
        await asyncio.sleep(0.05)
        _type(client, "4", 0, 4, 2)
        second = asyncio.ensure_future(_complete(client, 0, 5))
        assert (await first).items == ()
        assert (await second).items[0].insert_text == "1"
    assert len(engine.requests) == 1  # the first keystroke never reached the engine


async def test_typing_on_keeps_the_request_in_flight_and_answers_from_it(
    client: LanguageClient,
) -> None:
    engine = ScriptedEngine(chunks=["foo", "(bar", ")"], step_delay_s=0.2)
    async with in_process_serving(engine) as address:
        await _initialize(client, servingAddress=address)
        _open(client, "x = ")
        first = asyncio.ensure_future(_complete(client, 0, 4))
        while not engine.requests:
            await asyncio.sleep(0.01)
        _type(client, "fo", 0, 4, 2)  # typed while the model is still writing
        second = (await _complete(client, 0, 6)).items
        assert [item.insert_text for item in (await first).items] == ["foo(bar)"]
        assert [item.insert_text for item in second] == ["o(bar)"]
        stats = await execute(client, "quill.stats")
    assert len(engine.requests) == 1 and engine.aborted == []  # nothing thrown away
    assert stats["reusedInFlight"] == 1 and stats["superseded"] == 0


async def test_settings_that_once_broke_completions_are_refused_and_completions_work(
    client: LanguageClient,
) -> None:
    engine = ScriptedEngine(chunks=["a + b", "\n"])
    async with in_process_serving(engine) as address:
        await _initialize(
            client,
            servingAddress=address,
            requestTimeoutS=float("nan"),
            maxTokens=2**40,
            retrievalTokenBudget=2**40,
            debounceMs=1e12,
            maxPrefixChars=100,
        )
        _open(client, "def add(a, b):\n    return \n")
        result = await asyncio.wait_for(_complete(client, 1, 11), 10)
        assert [item.insert_text for item in result.items] == ["a + b"]
    (message,) = [m.message for m in client.messages if "settings" in m.message]
    for key in ("requestTimeoutS", "maxTokens", "retrievalTokenBudget", "debounceMs"):
        assert key in message
    assert "maxPrefixChars" not in message  # a good key is taken
