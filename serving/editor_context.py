"""Snippets the editor sent with a completion (ContextOptions.snippets): checked, then prompt
blocks for serving/retrieval_context.py to place beside the retrieved chunks.

The language server picks them from the open documents and the regions edited recently
(lsp_server/completion/snippets.py). Their number and sizes are checked at the edge with every
other field (serving/request_limits.py); here, what they mean; and those that repeat the
document's own lines already in the prompt are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from quill.v1 import quill_pb2 as pb
from serving.context import ContextBlock
from serving.errors import InvalidRequestError

SNIPPET_KINDS = ("open_document", "recent_edit")


def validate_snippets(snippets: Sequence[pb.ContextSnippet]) -> None:
    """Raise InvalidRequestError, saying which snippet and why, unless all are usable."""
    for number, snippet in enumerate(snippets):
        if snippet.kind not in SNIPPET_KINDS:
            raise InvalidRequestError(
                f"context snippet {number}: kind {snippet.kind!r} is not one of "
                + ", ".join(SNIPPET_KINDS)
            )
        if "\x00" in snippet.text or "\x00" in snippet.path:
            raise InvalidRequestError(f"context snippet {number} contains NUL characters")
        if snippet.start_line < 1 or snippet.end_line < snippet.start_line:
            raise InvalidRequestError(
                f"context snippet {number}: lines {snippet.start_line}-{snippet.end_line} are not "
                "a one-based inclusive range"
            )


def editor_blocks(request: pb.CompleteRequest, shown: tuple[int, int]) -> list[ContextBlock]:
    """The request's snippets as blocks, best first, without those of the document itself that
    overlap `shown` (its one-based lines already in the prompt)."""
    snippets = sorted(request.context.snippets, key=lambda s: -s.score)
    return [
        ContextBlock(s.kind, s.path, s.start_line, s.end_line, s.text, s.score)
        for s in snippets
        if s.text.strip()
        and not (
            s.path == request.file_path and s.start_line <= shown[1] and shown[0] <= s.end_line
        )
    ]
