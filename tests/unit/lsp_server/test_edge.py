"""The protocol's edge (lsp_server/protocol.py) against a real `quill lsp`: one answer per request
with the right error code, nothing for notifications, the LSP's lifecycle and exit codes,
normalised strings, refused document changes, and logging that a flood cannot blow up."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from lsp_server.app import create_server
from lsp_server.framing import Frame
from tests.conftest import ROOT, in_process_serving
from tests.support.fakes import ScriptedEngine
from tests.support.lsp_fuzz import encode, frame
from tests.support.raw_lsp import RawLsp, raw_lsp

URI = (ROOT / "tests" / "data" / "edge.py").as_uri()
DOWN = ("--address", "127.0.0.1:9")


def _request(msg_id: Any, method: Any, params: Any = None, **fields: Any) -> bytes:
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params, **fields}
    return frame(encode(message))


def _notification(method: str, params: Any) -> bytes:
    return frame(encode({"jsonrpc": "2.0", "method": method, "params": params}))


def _completion_params(line: Any = 0, character: Any = 0, uri: str = URI) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1},
    }


def _error(server: RawLsp, msg_id: Any) -> tuple[int, str]:
    (answer,) = server.answers[msg_id]
    return answer["error"]["code"], answer["error"]["message"]


async def _open(server: RawLsp, text: str, language: Any = "python", uri: str = URI) -> None:
    item = {"uri": uri, "languageId": language, "version": 1, "text": text}
    await server.notify("textDocument/didOpen", {"textDocument": item})


async def _change(server: RawLsp, version: int, change: dict[str, Any]) -> None:
    params = {"textDocument": {"uri": URI, "version": version}, "contentChanges": [change]}
    await server.notify("textDocument/didChange", params)


def _span(start: tuple[int, int], end: tuple[int, int]) -> dict[str, Any]:
    return {
        "start": {"line": start[0], "character": start[1]},
        "end": {"line": end[0], "character": end[1]},
    }


async def test_each_bad_request_gets_one_answer_with_its_error_code() -> None:
    nested = {"jsonrpc": "2.0", "id": 99, "method": "shutdown", "params": {"jsonrpc": "2.0"}}
    async with raw_lsp(*DOWN) as server:
        await server.initialize()
        await _open(server, "x = 1\n")
        no_context = _completion_params()
        del no_context["context"]
        complete, command = "textDocument/inlineCompletion", "workspace/executeCommand"
        stats, no_change = {"command": "quill.stats"}, {"textDocument": {"uri": URI}}
        batch = [
            _request("line", complete, _completion_params(line=-1)),
            _request("context", complete, no_context),
            _request("type", complete, _completion_params(character="0")),
            _request("past", complete, _completion_params(line=5)),
            _request("nested", command, {**stats, "arguments": [nested]}),
            _request("change", "textDocument/didChange", no_change),
            _request("unknown", "quill/noSuchMethod", {}),
            _request("version", command, stats, jsonrpc="1.0"),
            _request("method", 42, {}),
            _request("command", command, {"command": "quill.noSuchCommand"}),
            # Notifications are never answered, however bad.
            _notification("textDocument/didOpen", {"textDocument": {"version": "x"}}),
            _notification(complete, _completion_params()),
            _notification("quill/noSuchNotification", None),
            _request("last", complete, _completion_params(0, 5)),
        ]
        await server.send(b"".join(batch))
        ids = ["line", "context", "type", "past", "nested", "change", "unknown", "version"]
        ids += ["method", "command", "last"]
        await server.wait_for(ids, 20)
        assert _error(server, "line") == (
            -32602,
            "params.position: Position.line should be in range [0:2147483647], but was -1.",
        )
        assert _error(server, "context") == (-32602, "params.context: required field missing")
        assert _error(server, "type")[1] == (
            "params.position.character: expected an integer, got a string"
        )
        assert _error(server, "past") == (
            -32602,
            "line 5 is past the end of the document (2 lines)",
        )
        assert "result" in server.answers["nested"][0]  # an argument, not a message
        assert _error(server, "change")[0] == -32600
        assert _error(server, "unknown")[0] == -32601
        assert _error(server, "version")[0] == -32600
        assert _error(server, "method")[0] == -32600
        assert _error(server, "command")[0] == -32602
        assert server.answers["last"][0]["result"] == {"items": []}
        answered = [m for m in server.messages if "method" not in m]
        assert len(answered) == len(ids) + 1  # and initialize: nothing for the notifications
        assert await server.end() == 0


async def test_the_lifecycle_before_initialize_and_after_shutdown() -> None:
    async with raw_lsp(*DOWN) as server:
        early = await server.request("textDocument/inlineCompletion", _completion_params())
        assert early["error"]["code"] == -32002
        await server.initialize()
        again = await server.request("initialize", {"processId": None, "capabilities": {}})
        assert again["error"]["code"] == -32600
        assert (await server.request("shutdown"))["result"] is None
        late = await server.request("workspace/executeCommand", {"command": "quill.stats"})
        assert late["error"] == {
            "code": -32600,
            "message": "workspace/executeCommand after shutdown",
        }
        await server.notify("exit")
        assert await server.process.wait() == 0


async def test_an_unusual_capability_is_left_out_and_the_rest_kept() -> None:
    async with raw_lsp(*DOWN) as server:
        capabilities = {
            "general": {"positionEncodings": ["utf-8", "utf-16"]},
            "textDocument": {"inlineCompletion": {"dynamicRegistration": "yes"}},
        }
        params = {"processId": None, "rootUri": ROOT.as_uri(), "capabilities": capabilities}
        answer = await server.request("initialize", params)
        assert answer["result"]["capabilities"]["positionEncoding"] == "utf-8"  # kept
        await server.notify("initialized", {})
        await _open(server, "x = 1\n")
        answer = await server.request("textDocument/inlineCompletion", _completion_params(0, 5))
        assert answer["result"] == {"items": []}
        assert await server.end() == 0
        stderr = server.stderr()
    assert (
        "initialize: capabilities left out: "
        "params.capabilities.textDocument.inlineCompletion.dynamicRegistration: expected a boolean"
    ) in stderr


async def test_notifications_before_initialize_are_dropped() -> None:
    async with raw_lsp(*DOWN) as server:
        await _open(server, "x = 1\n")
        await server.initialize()
        answer = await server.request("textDocument/inlineCompletion", _completion_params(0, 9))
        assert answer["result"] == {"items": []}  # not open: no "past the end" error
        assert await server.end() == 0
        assert "textDocument/didOpen' before initialize: ignored" in server.stderr()


async def test_exit_without_shutdown_exits_with_code_1() -> None:
    async with raw_lsp(*DOWN) as server:
        await server.initialize()
        await server.notify("exit")
        assert await server.process.wait() == 1


def test_a_failing_handler_is_answered_with_a_short_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = create_server()

    @server.command("test.fail")
    def fail(ls: Any, *args: Any) -> None:
        raise TypeError(f"cannot handle {args!r}")

    sent: list[dict[str, Any]] = []

    class Writer:
        def write(self, data: bytes) -> None:
            sent.append(json.loads(data.partition(b"\r\n\r\n")[2]))

        def close(self) -> None:
            pass

    protocol = server.protocol
    protocol.set_writer(Writer())
    initialize = {"processId": None, "rootUri": None, "capabilities": {}}
    protocol.receive_frame(Frame(_request(1, "initialize", initialize).partition(b"\r\n\r\n")[2]))
    command = {"command": "test.fail", "arguments": ["a"]}
    with caplog.at_level(logging.INFO, logger="lsp_server"):
        body = _request(2, "workspace/executeCommand", command).partition(b"\r\n\r\n")[2]
        protocol.receive_frame(Frame(body))
    assert sent[-1] == {
        "jsonrpc": "2.0",
        "id": 2,
        "error": {"code": -32603, "message": "internal error: TypeError: cannot handle ('a',)"},
    }
    failures = [r for r in caplog.records if r.name == "lsp_server.protocol"]
    assert [r.getMessage() for r in failures] == ["workspace/executeCommand failed"]
    assert failures[0].exc_info is not None  # the traceback, for DEBUG: the filter cuts it


async def test_strings_are_normalised_at_the_edge() -> None:
    engine = ScriptedEngine(chunks=["a + b"])
    async with in_process_serving(engine) as address, raw_lsp("--address", address) as server:
        await server.initialize()
        # didOpen cannot be answered: a languageId of 5 is taken as "" and the document kept.
        await _open(server, "s = '\U0001f600'\nt = ", language=5)
        answer = await server.request("textDocument/inlineCompletion", _completion_params(1, 4))
        assert [item["insertText"] for item in answer["result"]["items"]] == ["a + b"]
        # Inside the emoji's surrogate pair: refused, not snapped.
        inside = await server.request("textDocument/inlineCompletion", _completion_params(0, 6))
        assert inside["error"]["code"] == -32602
        assert "inside a character" in inside["error"]["message"]
        # Lone surrogates become U+FFFD: a uri that is not open, an accept for no suggestion.
        lone = await server.request(
            "textDocument/inlineCompletion", _completion_params(uri=URI + "\ud800")
        )
        assert lone["result"] == {"items": []}
        accept = {"command": "quill.acceptCompletion", "arguments": ["\udfff"]}
        assert (await server.request("workspace/executeCommand", accept))["result"] is None
        assert await server.end() == 0


async def test_a_refused_change_sets_the_document_aside_until_its_whole_text_comes() -> None:
    engine = ScriptedEngine(chunks=["1"])
    async with in_process_serving(engine) as address, raw_lsp("--address", address) as server:
        await server.initialize()
        await _open(server, "x = 0\n")
        await _change(server, 2, {"range": _span((0, 4), (0, 5)), "text": "2"})
        await _change(server, 3, {"range": _span((0, 5), (0, 1)), "text": "y"})  # reversed
        answer = await server.request("textDocument/inlineCompletion", _completion_params(0, 5))
        assert answer["result"] == {"items": []} and engine.requests == []
        # Later edits cannot be applied to a copy the server no longer has.
        await _change(server, 4, {"range": _span((0, 0), (0, 0)), "text": "#"})
        await _change(server, 5, {"range": _span((9, 0), (9, 0)), "text": "z"})  # out of range
        answer = await server.request("textDocument/inlineCompletion", _completion_params(0, 5))
        assert answer["result"] == {"items": []} and engine.requests == []
        # The whole text again: back in sync, and completing from it.
        await _change(server, 6, {"text": "y = 3\n"})
        answer = await server.request("textDocument/inlineCompletion", _completion_params(0, 4))
        assert [item["insertText"] for item in answer["result"]["items"]] == ["1"]
        assert engine.requests[-1].prompt_token_ids == engine.encode("y = ")
        assert await server.end() == 0
        stderr = server.stderr()
    assert stderr.count("didChange refused") == 1  # the second refusal came to a set-aside copy


async def test_a_flood_of_bad_messages_costs_a_few_log_lines() -> None:
    async with raw_lsp(*DOWN) as server:
        await server.initialize()
        ids = [f"flood-{n}" for n in range(2000)]
        await server.send(b"".join(_request(i, "quill/noSuchMethod", {}) for i in ids))
        await server.send(b"garbage " * 1000 + frame(b"{not json"))
        await server.wait_for(ids, 60)
        assert all(_error(server, i)[0] == -32601 for i in ids)
        assert await server.end() == 0
        lines = server.stderr().splitlines()
    assert len(lines) < 25, lines
    assert any("more 'refused (-32601)' lines were suppressed" in line for line in lines)
