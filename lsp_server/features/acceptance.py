"""Acceptance tracking.

- The inline completion item carries `quill.acceptCompletion`, which editors run on accept.
- Copilot-compatible notifications, where clients send them: `textDocument/didShowCompletion`
  ({item}) and `textDocument/didPartiallyAcceptCompletion` ({item, acceptedLength}).
Events go to serving in batches (lsp_server/telemetry.py); `quill.stats` shows this session's
counts. Accepted text is followed for the retention checks (lsp_server/retention.py).
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from lsp_server.custom_messages import (
    DidPartiallyAcceptCompletionParams,
    DidShowCompletionParams,
)
from lsp_server.methods import (
    ACCEPT_COMMAND,
    DID_PARTIALLY_ACCEPT_COMPLETION,
    DID_SHOW_COMPLETION,
    STATS_COMMAND,
)
from lsp_server.server import QuillLanguageServer

logger = logging.getLogger(__name__)


def _suggestion_id(item: types.InlineCompletionItem) -> str | None:
    """Our suggestion id travels as the first argument of the item's accept command."""
    command = item.command
    if command is None or command.command != ACCEPT_COMMAND or not command.arguments:
        return None
    suggestion_id = command.arguments[0]
    return suggestion_id if isinstance(suggestion_id, str) else None


def _source(ls: QuillLanguageServer, uri: str) -> str | None:
    document = ls.open_document(uri)
    return document.source if document is not None else None


def register(server: QuillLanguageServer) -> None:
    @server.command(ACCEPT_COMMAND)
    def accept(ls: QuillLanguageServer, *args: Any) -> None:
        suggestion_id = args[0] if args and isinstance(args[0], str) else None
        if suggestion_id is None:
            logger.warning("%s without a suggestion id; ignored", ACCEPT_COMMAND)
            return
        # The length of what was inserted: less than the suggestion after type-ahead.
        length = args[1] if len(args) > 1 and isinstance(args[1], int) else None
        suggestion = ls.telemetry.accepted(suggestion_id, length)
        if suggestion is None:
            logger.info("accept for an unknown or already resolved suggestion; ignored")
            return
        ls.state.counters.accepted += 1
        ls.state.counters.accepted_chars += suggestion.accepted_chars
        ls.state.typeahead.forget(suggestion.uri)
        ls.state.retention.accepted(suggestion_id, length, lambda uri: _source(ls, uri))
        logger.info("suggestion %s accepted", suggestion_id)

    @server.feature(DID_SHOW_COMPLETION)
    def did_show(ls: QuillLanguageServer, params: DidShowCompletionParams) -> None:
        suggestion_id = _suggestion_id(params.item)
        if suggestion_id is not None:
            ls.telemetry.client_shown(suggestion_id)

    @server.feature(DID_PARTIALLY_ACCEPT_COMPLETION)
    def did_partially_accept(
        ls: QuillLanguageServer, params: DidPartiallyAcceptCompletionParams
    ) -> None:
        suggestion_id = _suggestion_id(params.item)
        length = params.accepted_length
        if suggestion_id is not None and length > 0:
            ls.telemetry.partially_accepted(suggestion_id, length)
            ls.state.retention.accepted(suggestion_id, length, lambda uri: _source(ls, uri))

    @server.command(STATS_COMMAND)
    def stats(ls: QuillLanguageServer, *args: Any) -> dict[str, Any]:
        """Counters of this session, for status lines and tests."""
        state = ls.state
        counters = state.counters
        return {
            "shown": counters.shown,
            "accepted": counters.accepted,
            "acceptedChars": counters.accepted_chars,
            "servingAvailable": ls.serving is not None and ls.serving.available,
            "servingProbes": ls.serving.probes if ls.serving is not None else 0,
            "eventsDelivered": ls.telemetry.delivered_total,
            "eventsDropped": ls.telemetry.dropped_total,
            "eventsMalformed": ls.telemetry.malformed_total,
            "retentionChecks": state.retention.reported,
            "typeAheadHits": state.typeahead.hits,
            # What is kept per document (freed when it closes).
            "documentsKept": {
                "open": len(ls.workspace.text_documents),
                "state": len(state.documents),
                "typeAhead": len(state.typeahead),
                "telemetry": ls.telemetry.documents_tracked,
            },
            "superseded": counters.superseded,
            "reusedInFlight": counters.reused,
            "refreshesSent": counters.refreshes_sent,
            "cancelledOnChange": counters.cancelled_on_change,
            "heldBack": counters.held_back,
            "earlyFirstLines": counters.early_first_lines,
            "usedTokens": state.token_usage.total,
            "streamedBlocks": [list(pair) for pair in state.streamed_blocks],
            "completions": [
                {
                    "multiLine": record.multi_line,
                    "tokens": record.tokens,
                    "shownTokens": state.token_usage.of(record.suggestion_id),
                    "outcome": record.outcome,
                    "seconds": round(record.seconds, 3),
                    "place": record.place,
                    "suggestionId": record.suggestion_id,
                    "context": record.context,
                }
                for record in state.completion_log
            ],
        }
