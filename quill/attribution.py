"""Which context fed a suggestion, as one bounded label both sides compute the same way.

The label is the set of kinds of context that went into the prompt, in a fixed order joined by
"+" ("open_document+retrieval"), or "none": at most 16 values. API search counts when catalog
entries went into the prompt or a tool call inside generation returned results. Serving labels
its attribution metrics with it; the language server keeps it per completion (`quill.stats`).
"""

from __future__ import annotations

from collections.abc import Iterable

from quill.v1 import quill_pb2 as pb

# Every kind a ContextSource can have, in label order.
CONTEXT_KINDS = ("open_document", "recent_edit", "retrieval", "api_search")
NO_CONTEXT = "none"


def context_label(sources: Iterable[pb.ContextSource], tool_calls: Iterable[pb.ToolCall]) -> str:
    kinds = {source.kind for source in sources}
    if any(call.outcome == "ok" and call.results for call in tool_calls):
        kinds.add("api_search")
    return "+".join(kind for kind in CONTEXT_KINDS if kind in kinds) or NO_CONTEXT
