"""The LSP base protocol's framing, without I/O: bytes in, message bodies and framing problems out.

A message is a header block (`Content-Length: N`, other headers ignored; each line ends with CRLF,
LF alone is accepted) ended by an empty line, then N bytes of body. Whatever arrives, the parser
keeps memory bounded and never stays deaf:

- A header block longer than `max_header_bytes`, a line that is not a header, or a block without
  an empty line: the bytes are skipped up to the next `Content-Length:` header.
- A Content-Length that is not a number, 0, too many digits or over `max_body_bytes`: the body is
  read without being kept (only its first bytes, so the message's id can be recovered for an
  error answer) up to its length or the next header, whichever comes first.
- A body shorter than its Content-Length: a JSON body never holds a raw `Content-Length: N` line
  (a JSON string cannot contain a raw line break), so a header met inside a body means the body
  ended there; the next message starts at the header.
- A body that stops arriving (no byte for `body_timeout_s`) is handed on as it is, cut.

Every event is a `Frame`; a frame whose `problem` is set is logged once by whoever handles it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Bytes of an over-size or unknown-length body kept to recover its id (ids come first in the
# messages of every client we know of).
HEAD_BYTES = 64 * 1024

# The start of a header that can begin the next message, as it appears inside a body or among
# stray bytes. The line break makes it impossible inside JSON text.
_HEADER = re.compile(rb"(?i)content-length:[ \t]{0,8}\d{1,20}[ \t]{0,8}\r?\n")
# Longest text _HEADER can match: how far back a search resumes when bytes come in pieces.
_HEADER_SPAN = 64
# The end of a body that is the beginning of a header, cut off by the body's (too large) length.
_HEADER_START_AT_END = re.compile(
    rb"(?i)c(?:o(?:n(?:t(?:e(?:n(?:t(?:-(?:l(?:e(?:n(?:g(?:t(?:h(?::[ \t]*\d*[ \t]*\r?)?"
    rb")?)?)?)?)?)?)?)?)?)?)?)?)?\Z"
)
_HEADER_NAME = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
# A Content-Length longer than this is not a length anyone can send.
_MAX_LENGTH_DIGITS = 20


@dataclass(frozen=True)
class FramingLimits:
    max_header_bytes: int = 8 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    # A message whose bytes stop arriving for this long is taken as cut where it stopped.
    body_timeout_s: float = 5.0


@dataclass(frozen=True)
class Frame:
    """A message body, or what is left of one.

    `complete` False: `body` holds only the first bytes of a body that was not kept (too large,
    unknown length); empty when there was no body at all (stray bytes). `problem` says what was
    wrong with the framing, if anything.
    """

    body: bytes
    complete: bool = True
    problem: str = ""


class FrameParser:
    """Feed it bytes as they come; it returns the frames they complete."""

    def __init__(self, limits: FramingLimits | None = None) -> None:
        self.limits = limits or FramingLimits()
        self._buffer = bytearray()
        # "headers", "body" or "resync" (skipping to the next header).
        self._state = "headers"
        self._notes: list[str] = []
        # The body being read: its declared length (None: unusable), bytes seen, bytes kept.
        self._length: int | None = None
        self._keep = 0
        self._seen = 0
        self._body = bytearray()
        self._declared = ""
        # The body's last bytes, to find a header that began in an earlier piece.
        self._tail = b""
        self._skipped = 0
        self._skip_reason = ""

    @property
    def mid_message(self) -> bool:
        """Whether part of a message has arrived and the rest is awaited."""
        return self._state == "body" or (self._state == "headers" and bool(self._buffer.strip()))

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while self._buffer:
            if self._state == "headers":
                done = self._read_headers(frames)
            elif self._state == "body":
                done = self._read_body(frames)
            else:
                done = self._resync(frames)
            if not done:
                break
        return frames

    def close(self) -> list[Frame]:
        """The stream ended: what is left, as frames."""
        return self._cut("the stream ended")

    def flush_stalled(self) -> list[Frame]:
        """No bytes came for `body_timeout_s` in the middle of a message: hand it on as cut."""
        return self._cut(f"no more bytes for {self.limits.body_timeout_s:g} s")

    def _cut(self, why: str) -> list[Frame]:
        frames: list[Frame] = []
        if self._state == "body":
            problem = (
                f"{why} after {self._seen} bytes of a body with Content-Length {self._declared}"
            )
            frames.append(self._end_body(self._seen, problem))
        elif self._state == "headers" and self._buffer.strip():
            self._skipped += len(self._buffer)
            self._skip_reason = f"an unfinished header block ({why})"
        self._buffer.clear()
        if self._skipped:
            frames.append(self._skipped_frame())
        self._state = "headers"
        return frames

    # -- headers ---------------------------------------------------------------------------

    def _read_headers(self, frames: list[Frame]) -> bool:
        length: bytes | None = None
        start = 0
        position = 0
        lf_only = False
        while True:
            end = self._buffer.find(b"\n", position)
            if end < 0:
                if len(self._buffer) - start > self.limits.max_header_bytes:
                    self._start_resync(start + 1, "a header block over the size limit")
                    return True
                return False  # wait for the rest of the block
            line = bytes(self._buffer[position:end])
            position = end + 1
            if position - start > self.limits.max_header_bytes:
                self._start_resync(start + 1, "a header block over the size limit")
                return True
            if line.endswith(b"\r"):
                line = line[:-1]
            else:
                lf_only = True
            if not line:
                if length is None and position - start <= 2:
                    start = position  # blank lines between messages
                    lf_only = False
                    continue
                break
            name, colon, value = line.partition(b":")
            # "xyzContent-Length: 5" is stray bytes run into a header, not a header named so.
            header_inside = _HEADER.search(line + b"\n", 1)
            if not colon or not _HEADER_NAME.fullmatch(name) or header_inside is not None:
                self._start_resync(start + 1, "bytes that are not a header")
                return True
            if name.lower() == b"content-length" and length is None:
                length = value.strip(b" \t")
        del self._buffer[:position]
        if lf_only:
            self._notes.append("header lines end with LF, not CRLF")
        self._start_body(length)
        return True

    def _start_body(self, value: bytes | None) -> None:
        limits = self.limits
        self._state = "body"
        self._seen = 0
        self._body = bytearray()
        self._tail = b""
        digits = value.lstrip(b"0") if value is not None and value.isdigit() else None
        if value is None:
            self._declared = "(none)"
        else:
            shown = value.decode("ascii", "replace")
            self._declared = shown if len(shown) <= 24 else f"of {len(shown)} characters"
        if digits is None or not digits or len(digits) > _MAX_LENGTH_DIGITS:
            self._length = None
        else:
            self._length = int(digits)
        if self._length is None:
            self._notes.append(f"unusable Content-Length {self._declared}")
        elif self._length > limits.max_body_bytes:
            self._notes.append(
                f"a body of {self._length} bytes is over the limit of {limits.max_body_bytes}"
            )
        usable = self._length is not None and self._length <= limits.max_body_bytes
        self._keep = self._length if usable and self._length is not None else HEAD_BYTES

    # -- body ------------------------------------------------------------------------------

    def _read_body(self, frames: list[Frame]) -> bool:
        remaining = None if self._length is None else self._length - self._seen
        piece = bytes(self._buffer if remaining is None else self._buffer[:remaining])
        # A header inside the body means the body ended there (it was shorter than declared).
        window = self._tail + piece
        found = _HEADER.search(window)
        if found is not None:
            at = self._seen - len(self._tail) + found.start()
            rest = window[found.start() :] + bytes(self._buffer[len(piece) :])
            self._keep_bytes(piece[: max(0, at - self._seen)])
            problem = (
                f"a header came after {at} bytes of a body with Content-Length {self._declared}"
            )
            frames.append(self._end_body(at, problem))
            self._buffer[:] = rest
            return True
        self._keep_bytes(piece)
        self._seen += len(piece)
        self._tail = window[-_HEADER_SPAN:]
        del self._buffer[: len(piece)]
        if self._length is None or self._seen < self._length:
            return False
        frames.append(self._end_body(self._seen, ""))
        return True

    def _keep_bytes(self, piece: bytes) -> None:
        room = self._keep - len(self._body)
        if room > 0:
            self._body += piece[:room]

    def _end_body(self, size: int, problem: str) -> Frame:
        """The body ended after `size` bytes: its frame; the parser goes back to headers."""
        notes = self._notes
        self._notes = []
        self._state = "headers"
        body = bytes(self._body[:size])
        self._body = bytearray()
        complete = size <= min(self._keep, self.limits.max_body_bytes)
        if complete and not problem and self._length is not None:
            # A length too large by a few bytes swallows the start of the next header.
            cut = _HEADER_START_AT_END.search(body, max(0, len(body) - _HEADER_SPAN))
            if cut is not None and cut.start() > 0:
                self._buffer[:0] = body[cut.start() :]
                body = body[: cut.start()]
                problem = f"the body ran into the next header (Content-Length {self._declared})"
        if problem:
            notes.append(problem)
        return Frame(body, complete, "; ".join(notes))

    # -- resynchronisation -----------------------------------------------------------------

    def _start_resync(self, skip: int, reason: str) -> None:
        self._skipped += skip
        self._skip_reason = self._skip_reason or reason
        del self._buffer[:skip]
        self._notes = []
        self._state = "resync"

    def _resync(self, frames: list[Frame]) -> bool:
        found = _HEADER.search(self._buffer)
        if found is None:
            # Keep what could be the beginning of a header split across pieces.
            drop = max(0, len(self._buffer) - _HEADER_SPAN)
            self._skipped += drop
            del self._buffer[:drop]
            return False
        self._skipped += found.start()
        del self._buffer[: found.start()]
        frames.append(self._skipped_frame())
        self._state = "headers"
        return True

    def _skipped_frame(self) -> Frame:
        frame = Frame(
            b"", complete=False, problem=f"skipped {self._skipped} bytes: {self._skip_reason}"
        )
        self._skipped = 0
        self._skip_reason = ""
        return frame
