"""Positions in a document and the edits of didChange, checked as the LSP defines them.

Lines end with \\n, \\r\\n or \\r (only those: unlike str.splitlines, so line numbers agree with
the editor's). `character` counts code units of the negotiated position encoding (UTF-16 unless
the client chose otherwise). A position past the end of its line or of the document, or inside a
character (between the two UTF-16 units of a surrogate pair, or inside a UTF-8 sequence), is
rejected, never snapped: the server answers only for the text the editor means.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lsprotocol import types
from pygls.workspace import PositionCodec

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class InvalidPositionError(ValueError):
    pass


class InvalidChangeError(ValueError):
    pass


def line_bounds(text: str, line: int) -> tuple[int, int]:
    """Offsets of the start and the end (before its line break) of line `line`."""
    start = 0
    for number, found in enumerate(_LINE_BREAK.finditer(text)):
        if number == line:
            return start, found.start()
        start = found.end()
    lines = text.count("\n") + text.count("\r") - text.count("\r\n") + 1
    if line == lines - 1:
        return start, len(text)
    raise InvalidPositionError(f"line {line} is past the end of the document ({lines} lines)")


def offset_of(text: str, position: types.Position, codec: PositionCodec) -> int:
    """The offset in `text` (code points) of an LSP position."""
    start, end = line_bounds(text, position.line)
    line = text[start:end]
    character = position.character
    head = line[:character]
    if head.isascii() and len(head) == character:
        return start + character  # one code unit per character in every encoding
    units = 0
    for index, char in enumerate(line):
        if units == character:
            return start + index
        units += codec.impl.code_units_for_char(char)
        if units > character:
            raise InvalidPositionError(
                f"character {character} of line {position.line} is inside a character "
                f"(counted in {getattr(codec.encoding, 'value', codec.encoding)} code units)"
            )
    if units == character:
        return end
    raise InvalidPositionError(
        f"character {character} is past the end of line {position.line} ({units} code units)"
    )


def apply_changes(
    text: str,
    changes: Sequence[types.TextDocumentContentChangeEvent],
    codec: PositionCodec,
) -> str:
    """The text after `changes`, each applied to the result of the ones before (LSP order).
    Raises InvalidChangeError, naming the change, if any range is reversed or out of the text:
    then none of them may be applied."""
    for number, change in enumerate(changes):
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            text = change.text
            continue
        try:
            start = offset_of(text, change.range.start, codec)
            end = offset_of(text, change.range.end, codec)
        except InvalidPositionError as error:
            raise InvalidChangeError(f"contentChanges[{number}].range: {error}") from error
        if end < start:
            raise InvalidChangeError(f"contentChanges[{number}].range ends before it starts")
        text = text[:start] + change.text + text[end:]
    return text


def from_last_whole_text(
    changes: Sequence[types.TextDocumentContentChangeEvent],
) -> Sequence[types.TextDocumentContentChangeEvent] | None:
    """The changes from the last one that gives the whole text on; None if none does."""
    for index in range(len(changes) - 1, -1, -1):
        if isinstance(changes[index], types.TextDocumentContentChangeWholeDocument):
            return changes[index:]
    return None
