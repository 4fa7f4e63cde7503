"""The stdio loop (lsp_server/transport.py) on a real pipe, with a stand-in protocol."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from lsp_server.framing import Frame, FramingLimits
from lsp_server.transport import serve_stdio
from tests.support.lsp_fuzz import frame


class _Receiver:
    def __init__(self, shutdown_received: bool = True, fail_on: bytes = b"", exit_on: bytes = b""):
        self.shutdown_received = shutdown_received
        self.frames: list[Frame] = []
        self.fail_on = fail_on
        self.exit_on = exit_on

    def set_writer(self, writer: Any, include_headers: bool = True) -> None:
        self.writer = writer

    def receive_frame(self, received: Frame) -> None:
        self.frames.append(received)
        if received.body == self.fail_on:
            raise RuntimeError("a bug in one handler")
        if received.body == self.exit_on:
            sys.exit(1)


def _serve(receiver: _Receiver, data: bytes) -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    try:
        return serve_stdio(receiver, FramingLimits(), stdin_fd=read_end, stdout=io.BytesIO())
    finally:
        os.close(read_end)


def test_a_failing_message_does_not_end_the_session() -> None:
    receiver = _Receiver(fail_on=b"{}")
    assert _serve(receiver, frame(b"{}") + frame(b"[]")) == 0
    assert [f.body for f in receiver.frames] == [b"{}", b"[]"]


def test_the_end_of_the_input_without_shutdown_exits_with_1() -> None:
    assert _serve(_Receiver(shutdown_received=False), frame(b"{}")) == 1


def test_exit_ends_the_session_with_its_code() -> None:
    receiver = _Receiver(exit_on=b"{}")
    assert _serve(receiver, frame(b"{}") + frame(b"[]")) == 1
    assert [f.body for f in receiver.frames] == [b"{}"]
