"""Each framing fault from issue 16 against a real `quill lsp`: the process lives on, answers
the message after the fault, and answers the damaged message too when its id can be read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.support.lsp_fuzz import INVALID_REQUEST, PARSE_ERROR, RESULT, encode, frame
from tests.support.raw_lsp import raw_lsp

STATS = {"command": "quill.stats"}
# The messages sent after each fault, all of which must be answered.
FOLLOWING = 20


def _body(msg_id: str, arguments: list[str] | None = None) -> bytes:
    params = {**STATS, "arguments": arguments or []}
    return encode(
        {"jsonrpc": "2.0", "id": msg_id, "method": "workspace/executeCommand", "params": params}
    )


FAULTS: dict[str, tuple[Callable[[bytes], bytes], int | None | str]] = {
    # fault -> (the bytes sent, built from the damaged message's body; what it is answered)
    "body 5 bytes shorter than its Content-Length": (
        lambda body: frame(body, length=len(body) + 5),
        RESULT,
    ),
    "body 5 bytes longer than its Content-Length": (
        lambda body: frame(body, length=len(body) - 5),
        PARSE_ERROR,
    ),
    "stray bytes": (lambda body: b"\x00stray bytes\r\n" + frame(body), RESULT),
    "LF-only headers": (lambda body: frame(body, line_end=b"\n"), RESULT),
    "Content-Length: 0": (lambda body: b"Content-Length: 0\r\n\r\n" + frame(body), RESULT),
    "a Content-Length of 5,000 digits": (
        lambda body: b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n" + body,
        RESULT,
    ),
    "Content-Length: 100000000000": (
        lambda body: b"Content-Length: 100000000000\r\n\r\n" + body,
        RESULT,
    ),
    "a header block over 8 KB": (
        lambda body: b"X-Padding: " + b"p" * 9000 + b"\r\n" + frame(body),
        RESULT,
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_framing_fault_neither_kills_nor_deafens_the_server(fault: str) -> None:
    build, outcome = FAULTS[fault]
    async with raw_lsp("--address", "127.0.0.1:9") as server:
        await server.initialize()
        await server.send(build(_body("damaged")))
        following = [f"after-{n}" for n in range(FOLLOWING)]
        await server.send(b"".join(frame(_body(msg_id)) for msg_id in following))
        await server.wait_for(["damaged", *following], 20)
        assert server.process.returncode is None
        assert all(len(server.answers[msg_id]) == 1 for msg_id in following)
        assert all("result" in server.answers[msg_id][0] for msg_id in following)
        (damaged,) = server.answers["damaged"]
        assert (None if "result" in damaged else damaged["error"]["code"]) == outcome
        assert await server.end() == 0
        stderr = server.stderr()
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) < 10  # a line for the fault, not one per byte


async def test_a_body_over_the_limit_is_refused_under_its_id() -> None:
    async with raw_lsp("--address", "127.0.0.1:9", "--max-body-bytes", "4096") as server:
        await server.initialize()
        await server.send(frame(_body("big", ["x" * 10_000])) + frame(_body("after")))
        await server.wait_for(["big", "after"], 20)
        assert server.answers["big"][0]["error"]["code"] == INVALID_REQUEST
        assert "too large" in server.answers["big"][0]["error"]["message"]
        assert "result" in server.answers["after"][0]
        assert await server.end() == 0


async def test_a_message_cut_short_as_the_last_one_is_answered_after_the_timeout() -> None:
    async with raw_lsp("--address", "127.0.0.1:9", "--body-timeout-s", "0.3") as server:
        await server.initialize()
        body = _body("last")
        await server.send(frame(body, length=len(body) + 5))  # and then nothing more
        await server.wait_for(["last"], 10)
        assert "result" in server.answers["last"][0]
        assert await server.end() == 0


async def test_the_end_of_the_input_ends_the_server_without_a_traceback() -> None:
    async with raw_lsp("--address", "127.0.0.1:9") as server:
        await server.initialize()
        await server.send(b'Content-Length: 500\r\n\r\n{"jsonrpc"')
        assert server.process.stdin is not None
        server.process.stdin.close()
        assert await asyncio.wait_for(server.process.wait(), 20) == 1  # no shutdown came
        assert "Traceback" not in server.stderr()
