"""RETAINED events: how much of an accepted suggestion was still in the document at a check.

Trusted from serving's own record: language, mode, context and the characters accepted (the
denominator); from the event: the characters retained (clamped to those accepted), the check's
delay (one of quill/retention_checks.py's, so the `after` label stays bounded) and the origin.
Each check of a suggestion counts once.
"""

from __future__ import annotations

from quill.retention_checks import CHECK_DELAYS_S, after_label
from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.attribution import origin_label
from serving.suggestions import SuggestionRecord


def count_retained(record: SuggestionRecord, event: pb.SuggestionEvent) -> str | None:
    """Count one check; returns the reason it was rejected, or None."""
    after = event.retained_after_s
    if after not in CHECK_DELAYS_S:
        return "unknown_check"
    if not record.accepted_chars:
        return "not_accepted"
    if after in record.retention_checks:
        return "duplicate"
    record.retention_checks.add(after)
    retained = event.chars
    if retained > record.accepted_chars:
        metrics.EVENTS_REJECTED.labels("clamped").inc()
        retained = record.accepted_chars
    label = after_label(after)
    origin = origin_label(event.origin)
    metrics.SUGGESTION_CHARS_RETAINED.labels(record.language, record.mode, label).inc(retained)
    metrics.SUGGESTION_CHARS_CHECKED.labels(record.language, record.mode, label).inc(
        record.accepted_chars
    )
    metrics.CONTEXT_CHARS_RETAINED.labels(record.context, origin, label).inc(retained)
    metrics.CONTEXT_CHARS_CHECKED.labels(record.context, origin, label).inc(record.accepted_chars)
    return None
