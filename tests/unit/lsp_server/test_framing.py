"""The framing parser alone (lsp_server/framing.py): bytes in any pieces, frames out."""

from __future__ import annotations

import json

import pytest

from lsp_server.framing import HEAD_BYTES, Frame, FrameParser, FramingLimits
from tests.support.lsp_fuzz import frame


def _body(msg_id: int, padding: int = 0) -> bytes:
    message = {"jsonrpc": "2.0", "id": msg_id, "method": "m", "params": {"p": "x" * padding}}
    return json.dumps(message).encode()


def _parse(stream: bytes, piece: int, limits: FramingLimits | None = None) -> list[Frame]:
    parser = FrameParser(limits)
    frames: list[Frame] = []
    for start in range(0, len(stream), piece):
        frames += parser.feed(stream[start : start + piece])
    return frames + parser.close()


def _bodies(frames: list[Frame]) -> list[bytes]:
    return [f.body for f in frames if f.complete and f.body]


PIECES = [1, 7, 100, 1 << 20]
ONE, TWO, THREE = _body(1), _body(2), _body(3)


@pytest.mark.parametrize("piece", PIECES)
def test_well_formed_messages_come_out_whole_in_any_pieces(piece: int) -> None:
    frames = _parse(frame(ONE) + frame(TWO) + b"\r\n" + frame(THREE), piece)
    assert frames == [Frame(ONE), Frame(TWO), Frame(THREE)]


@pytest.mark.parametrize("piece", PIECES)
def test_a_body_shorter_than_its_length_ends_at_the_next_header(piece: int) -> None:
    for extra in (1, 5, 19, 40, 300):
        frames = _parse(frame(ONE, length=len(ONE) + extra) + frame(TWO) + frame(THREE), piece)
        assert _bodies(frames) == [ONE, TWO, THREE], extra
        assert "Content-Length" in frames[0].problem


@pytest.mark.parametrize("piece", PIECES)
def test_a_body_longer_than_its_length_is_cut_and_the_rest_skipped(piece: int) -> None:
    frames = _parse(frame(ONE, length=len(ONE) - 5) + frame(TWO), piece)
    assert frames[0] == Frame(ONE[:-5])  # handed on as cut: decoding it fails, its id remains
    assert frames[1].problem.startswith("skipped 5 bytes") and not frames[1].complete
    assert _bodies(frames[2:]) == [TWO]


@pytest.mark.parametrize("stray", [b"garbage", b"garbage\r\n", b"\x00\xff\r\n\r\n}", b"}"])
@pytest.mark.parametrize("piece", PIECES)
def test_stray_bytes_are_skipped_up_to_the_next_header(stray: bytes, piece: int) -> None:
    frames = _parse(frame(ONE) + stray + frame(TWO), piece)
    assert _bodies(frames) == [ONE, TWO]
    assert any(f.problem.startswith("skipped") for f in frames)


@pytest.mark.parametrize("piece", PIECES)
def test_lf_only_headers_are_accepted_and_noted(piece: int) -> None:
    frames = _parse(frame(ONE, line_end=b"\n") + frame(TWO), piece)
    assert _bodies(frames) == [ONE, TWO]
    assert "LF" in frames[0].problem


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Length: 0",
        b"Content-Length: " + b"9" * 5000,
        b"Content-Length: 100000000000",
        b"Content-Length: twelve",
        b"Content-Type: application/json",  # no length at all
    ],
)
@pytest.mark.parametrize("piece", PIECES)
def test_an_unusable_length_reads_the_body_up_to_the_next_header(header: bytes, piece: int) -> None:
    frames = _parse(header + b"\r\n\r\n" + ONE + frame(TWO), piece)
    assert _bodies(frames) == [ONE, TWO]
    assert frames[0].problem


def test_content_length_zero_then_a_message_loses_nothing() -> None:
    frames = _parse(b"Content-Length: 0\r\n\r\n" + frame(ONE), 1 << 20)
    assert frames[0].body == b"" and "Content-Length 0" in frames[0].problem
    assert _bodies(frames) == [ONE]


def test_a_body_over_the_limit_is_skipped_keeping_only_its_head() -> None:
    limits = FramingLimits(max_body_bytes=1000)
    big = _body(9, padding=100_000)
    frames = _parse(frame(big) + frame(TWO), 4096, limits)
    assert not frames[0].complete and "over the limit" in frames[0].problem
    assert frames[0].body == big[:HEAD_BYTES]
    assert _bodies(frames) == [TWO]


def test_a_header_block_over_the_limit_is_skipped() -> None:
    limits = FramingLimits(max_header_bytes=1024)
    frames = _parse(b"X-Padding: " + b"p" * 5000 + b"\r\n" + frame(ONE), 100, limits)
    assert frames[0].problem.startswith("skipped") and "header block" in frames[0].problem
    assert _bodies(frames) == [ONE]


def test_memory_stays_bounded_whatever_the_declared_length() -> None:
    parser = FrameParser(FramingLimits(max_body_bytes=1 << 20))
    parser.feed(b"Content-Length: 100000000000\r\n\r\n")
    for _ in range(200):  # 12.8 MB of a body that never ends
        parser.feed(b"x" * 65536)
        assert len(parser._body) <= HEAD_BYTES and len(parser._buffer) <= 65536
    assert parser.mid_message


def test_a_body_that_stops_arriving_is_handed_on_when_stalled() -> None:
    parser = FrameParser()
    assert parser.feed(frame(ONE, length=len(ONE) + 5)) == []
    assert parser.mid_message
    (cut,) = parser.flush_stalled()
    assert cut.body == ONE and "no more bytes" in cut.problem
    assert not parser.mid_message
    assert parser.feed(frame(TWO)) == [Frame(TWO)]


def test_the_end_of_the_input_hands_on_what_is_left() -> None:
    parser = FrameParser()
    parser.feed(frame(ONE)[:-3])
    (cut,) = parser.close()
    assert cut.body == ONE[:-3] and "the stream ended" in cut.problem
