"""Acceptance tracking: the inline completion item carries a command the editor runs on accept."""

from __future__ import annotations

import logging
from typing import Any

from lsp_server.server import QuillLanguageServer

logger = logging.getLogger(__name__)

ACCEPT_COMMAND = "quill.acceptCompletion"
STATS_COMMAND = "quill.stats"
# An accepted suggestion cannot be longer than the largest one serving produces; larger claims
# are clamped so a misbehaving client cannot inflate the counts.
_MAX_ACCEPTED_CHARS = 100_000


def register(server: QuillLanguageServer) -> None:
    @server.command(ACCEPT_COMMAND)
    def accept(ls: QuillLanguageServer, *args: Any) -> None:
        suggestion_id = args[0] if args and isinstance(args[0], str) else None
        length = args[1] if len(args) > 1 and isinstance(args[1], int) else 0
        if suggestion_id is None:
            logger.warning("%s without a suggestion id; ignored", ACCEPT_COMMAND)
            return
        ls.accepted_count += 1
        ls.accepted_chars += max(0, min(length, _MAX_ACCEPTED_CHARS))
        logger.info("suggestion %s accepted", suggestion_id)

    @server.command(STATS_COMMAND)
    def stats(ls: QuillLanguageServer, *args: Any) -> dict[str, Any]:
        """Counters of this session, for status lines and tests."""
        return {
            "shown": ls.shown_count,
            "accepted": ls.accepted_count,
            "acceptedChars": ls.accepted_chars,
            "servingAvailable": ls.serving is not None and ls.serving.available,
        }
