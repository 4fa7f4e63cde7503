"""Reading the text around the cursor out of a synced document, with the checks bad input needs."""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types
from pygls.workspace import TextDocument

from lsp_server.text_sync import InvalidPositionError, offset_of

__all__ = ["CursorContext", "InvalidPositionError", "UnusableDocumentError", "cursor_context"]


class UnusableDocumentError(ValueError):
    """The document cannot be completed (too large, binary); the reason goes to the log."""


@dataclass(frozen=True)
class CursorContext:
    prefix: str
    suffix: str
    # Text of the cursor's line before and after the cursor.
    line_before: str
    line_after: str
    # Cursor offset in the document, in characters.
    offset: int


def cursor_context(
    document: TextDocument,
    position: types.Position,
    max_document_bytes: int,
    max_prefix_chars: int,
    max_suffix_chars: int,
) -> CursorContext:
    source = document.source
    # Characters are a cheap lower bound on UTF-8 bytes; encode only when the bound is close.
    if len(source) > max_document_bytes or (
        len(source) * 4 > max_document_bytes
        and len(source.encode("utf-8", "surrogatepass")) > max_document_bytes
    ):
        raise UnusableDocumentError(
            f"document is larger than maxDocumentBytes ({max_document_bytes})"
        )
    if "\x00" in source:
        raise UnusableDocumentError("document contains NUL characters (binary content)")
    offset = offset_of(source, position, document.position_codec)
    prefix = source[:offset]
    suffix = source[offset:]
    line_start = prefix.rfind("\n") + 1
    line_end = suffix.find("\n")
    return CursorContext(
        prefix=prefix[-max_prefix_chars:] if max_prefix_chars else "",
        suffix=suffix[:max_suffix_chars],
        line_before=prefix[line_start:],
        line_after=suffix if line_end < 0 else suffix[:line_end],
        offset=offset,
    )
