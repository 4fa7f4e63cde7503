"""Positions and didChange edits checked as the LSP defines them (lsp_server/text_sync.py)."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.workspace import PositionCodec

from lsp_server.text_sync import (
    InvalidChangeError,
    InvalidPositionError,
    apply_changes,
    from_last_whole_text,
    offset_of,
)

UTF16 = PositionCodec(types.PositionEncodingKind.Utf16)
UTF8 = PositionCodec(types.PositionEncodingKind.Utf8)
UTF32 = PositionCodec(types.PositionEncodingKind.Utf32)
TEXT = "a\U0001f600b\r\nx\u2028y\rz\n"  # an astral character; \u2028 is no line break


def _at(line: int, character: int, codec: PositionCodec = UTF16) -> int:
    return offset_of(TEXT, types.Position(line=line, character=character), codec)


def test_offsets_count_code_units_of_the_negotiated_encoding() -> None:
    assert [_at(0, c) for c in (0, 1, 3, 4)] == [0, 1, 2, 3]
    assert _at(0, 5, UTF8) == 2 and _at(0, 2, UTF32) == 2
    assert _at(1, 3) == 8  # \u2028 is a character of line 1, not a line break
    assert (_at(2, 1), _at(3, 0)) == (10, 11)


@pytest.mark.parametrize(
    ("line", "character", "codec", "says"),
    [
        (0, 2, UTF16, "inside a character"),  # between the two halves of the surrogate pair
        (0, 3, UTF8, "inside a character"),
        (0, 5, UTF16, "past the end of line 0"),
        (4, 0, UTF16, "line 4 is past the end"),
        (3, 1, UTF16, "past the end of line 3"),
    ],
)
def test_positions_outside_the_text_are_refused_not_snapped(
    line: int, character: int, codec: PositionCodec, says: str
) -> None:
    with pytest.raises(InvalidPositionError, match=says):
        _at(line, character, codec)


def _edit(
    start: tuple[int, int], end: tuple[int, int], text: str
) -> types.TextDocumentContentChangeEvent:
    return types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(*start), end=types.Position(*end)), text=text
    )


def test_edits_apply_in_order_each_to_the_text_before_it() -> None:
    changes = [_edit((0, 0), (0, 1), "A"), _edit((0, 1), (0, 3), ""), _edit((1, 3), (1, 3), "!")]
    assert apply_changes(TEXT, changes, UTF16) == "Ab\r\nx\u2028y!\rz\n"
    whole = types.TextDocumentContentChangeWholeDocument(text="new\n")
    assert apply_changes(TEXT, [whole, _edit((1, 0), (1, 0), "x")], UTF16) == "new\nx"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ([_edit((0, 3), (0, 1), "x")], r"contentChanges\[0\].range ends before it starts"),
        ([_edit((0, 0), (0, 0), "x"), _edit((9, 0), (9, 0), "y")], r"contentChanges\[1\]"),
        ([_edit((0, 2), (0, 2), "x")], "inside a character"),
    ],
)
def test_a_bad_edit_refuses_the_whole_change(
    changes: list[types.TextDocumentContentChangeEvent], says: str
) -> None:
    with pytest.raises(InvalidChangeError, match=says):
        apply_changes(TEXT, changes, UTF16)


def test_from_the_last_whole_text_on() -> None:
    whole = types.TextDocumentContentChangeWholeDocument(text="t")
    edit = _edit((0, 0), (0, 0), "x")
    assert from_last_whole_text([edit, whole, edit]) == [whole, edit]
    assert from_last_whole_text([edit]) is None
