"""The language server over stdio, with a read loop no client can kill or deafen.

pygls's own loop (pygls/io_.py) exits on a Content-Length it cannot allocate or parse and stops
answering after a body of the wrong length until a bare CRLF arrives. This one reads with
lsp_server/framing.py (bounded sizes, resynchronisation on the next header) and hands every frame
to the protocol's `receive_frame`, which answers what can be answered (lsp_server/server.py).

Bytes are read by a daemon thread with os.read on the file descriptor: nothing to join and no
buffered-reader lock held at exit. Writes go straight to stdout; once the client has closed it,
the server stops. Tasks left at the end are cancelled, threads are not waited for (`quill lsp`
leaves without them). The exit code follows the LSP: 0 after `shutdown` then `exit` (or the end of
the input after `shutdown`), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from lsp_server.framing import Frame, FrameParser, FramingLimits

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 1024
# Seconds the tasks left at the end get to finish their cancellation.
_STOP_WAIT_S = 2.0
# Chunks read ahead of the parser (at most 1 MB): the reader waits when the server falls behind.
_QUEUED_CHUNKS = 16


class FrameReceiver(Protocol):
    @property
    def shutdown_received(self) -> bool: ...

    def receive_frame(self, frame: Frame) -> None: ...

    def set_writer(self, writer: Any, include_headers: bool = True) -> None: ...


def serve_stdio(
    protocol: FrameReceiver,
    limits: FramingLimits,
    stdin_fd: int | None = None,
    stdout: BinaryIO | None = None,
) -> int:
    """Serve until `exit` or the end of the input; returns the process's exit code."""
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_serve(protocol, limits, fd, stdout or sys.stdout.buffer))
    except KeyboardInterrupt:
        return 130
    finally:
        _stop_tasks(loop)


def _stop_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left, waiting a little for it (asyncio.run waits for ever, also for the
    default executor's threads: work there must not keep the process alive after `exit`)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=_STOP_WAIT_S))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


async def _serve(protocol: FrameReceiver, limits: FramingLimits, fd: int, stdout: BinaryIO) -> int:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_QUEUED_CHUNKS)
    output_closed = asyncio.Event()
    protocol.set_writer(_Writer(stdout, output_closed.set))
    reader = threading.Thread(
        target=_read_chunks, args=(fd, chunks, loop), name="quill-lsp-stdin", daemon=True
    )
    reader.start()
    parser = FrameParser(limits)
    try:
        while True:
            timeout = limits.body_timeout_s if parser.mid_message else None
            chunk = await _next_chunk(chunks, output_closed, timeout)
            if chunk is None:
                frames = parser.flush_stalled()
            elif chunk:
                frames = parser.feed(chunk)
            else:
                frames = parser.close()
            for frame in frames:
                try:
                    protocol.receive_frame(frame)
                except Exception:  # a bug in handling one message must not end the session
                    logger.error("a message could not be handled", exc_info=True)
                # Let a request's handler start (read the document) before the next message
                # (a didChange, say) is handled: messages take effect in the order they came.
                await asyncio.sleep(0)
            if chunk == b"":
                break
    except SystemExit as stop:  # pygls's `exit` handler ends the process this way
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    logger.info("the client closed the connection")
    return 0 if protocol.shutdown_received else 1


async def _next_chunk(
    chunks: asyncio.Queue[bytes], output_closed: asyncio.Event, timeout: float | None
) -> bytes | None:
    """The next chunk read; b"" at the end of the input or once the client stopped reading;
    None when `timeout` passed first."""
    if output_closed.is_set():
        return b""
    get = asyncio.ensure_future(chunks.get())
    closed = asyncio.ensure_future(output_closed.wait())
    done, _ = await asyncio.wait({get, closed}, timeout=timeout, return_when="FIRST_COMPLETED")
    closed.cancel()
    if get in done:
        return get.result()
    get.cancel()
    return b"" if output_closed.is_set() else None


def _read_chunks(fd: int, chunks: asyncio.Queue[bytes], loop: asyncio.AbstractEventLoop) -> None:
    while True:
        try:
            data = os.read(fd, _CHUNK_BYTES)
        except BlockingIOError:  # the client handed over a non-blocking pipe
            select.select([fd], [], [])
            continue
        except OSError:
            data = b""
        try:
            asyncio.run_coroutine_threadsafe(chunks.put(data), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):
            return  # the server has stopped
        if not data:
            return


class _Writer:
    """stdout for pygls's protocol; a closed pipe stops the server instead of raising in every
    response."""

    def __init__(self, stream: BinaryIO, on_closed: Callable[[], None]) -> None:
        self._stream = stream
        self._on_closed = on_closed
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            self._closed = True
            logger.warning("the client closed its end of stdout; stopping")
            self._on_closed()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            self._stream.close()
