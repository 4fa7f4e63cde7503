"""Attribution metrics: shown and accepted suggestions by the context in their prompt
(quill/attribution.py's bounded label, from serving's own record) and by how the item the
editor showed was produced (`origin`, from the client's event, one of five values)."""

from __future__ import annotations

from quill.v1 import quill_pb2 as pb
from serving import metrics

_ORIGINS: dict[int, str] = {
    pb.SUGGESTION_ORIGIN_FRESH: "fresh",
    pb.SUGGESTION_ORIGIN_TYPE_AHEAD: "type_ahead",
    pb.SUGGESTION_ORIGIN_REUSED: "reused",
    pb.SUGGESTION_ORIGIN_STREAMED: "streamed",
}


def origin_label(origin: int) -> str:
    return _ORIGINS.get(origin, "unspecified")


def count_shown(context: str, event: pb.SuggestionEvent) -> None:
    metrics.CONTEXT_SUGGESTIONS_SHOWN.labels(context, origin_label(event.origin)).inc()


def count_accepted(context: str, event: pb.SuggestionEvent) -> None:
    metrics.CONTEXT_SUGGESTIONS_ACCEPTED.labels(context, origin_label(event.origin)).inc()
