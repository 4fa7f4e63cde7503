"""The ReportEvents RPC: turn editor-side events into Prometheus counts, trusting nothing.

Events must name a suggestion serving issued to the same tenant; language and mode come from
serving's own record, not from the client; character counts are clamped to the suggestion's
length; each suggestion is counted shown once, accepted at most up to its length, rejected once.
Whatever is dropped or clamped is counted in quill_events_rejected_total by reason. Attribution
(serving/attribution.py) and retention checks (serving/retention.py) are counted the same way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from quill.v1 import quill_pb2 as pb
from serving import attribution, metrics
from serving.retention import count_retained
from serving.suggestions import SuggestionRecord, SuggestionRegistry
from serving.tenant_metrics import TenantLabels

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_BATCH = 1000
# More than this many characters typed in one batch, all languages together, is not typing.
MAX_TYPED_CHARS_PER_BATCH = 100_000
MAX_UNDELIVERED_PER_BATCH = 1_000_000


class EventRecorder:
    def __init__(self, registry: SuggestionRegistry, tenants: TenantLabels | None = None) -> None:
        self._registry = registry
        # Per-tenant series, only when the operator opted in.
        self._tenants = tenants or TenantLabels()

    def record(self, tenant: str, request: pb.ReportEventsRequest) -> pb.ReportEventsResponse:
        recorded = rejected = 0
        events = request.events
        if len(events) > MAX_EVENTS_PER_BATCH:
            metrics.EVENTS_REJECTED.labels("flood").inc(len(events) - MAX_EVENTS_PER_BATCH)
            rejected += len(events) - MAX_EVENTS_PER_BATCH
            events = events[:MAX_EVENTS_PER_BATCH]
        for event in events:
            reason = self._apply(tenant, event)
            if reason is None:
                recorded += 1
            else:
                metrics.EVENTS_REJECTED.labels(reason).inc()
                rejected += 1
        typed, clamped = bounded_typed_chars(request.typed_chars)
        if clamped:
            metrics.EVENTS_REJECTED.labels("clamped").inc()
        for label, chars in typed.items():
            metrics.CHARS_TYPED.labels(label).inc(chars)
        if recorded:
            self._registry.touch()
        if request.undelivered_events:
            metrics.EVENTS_UNDELIVERED.inc(
                min(request.undelivered_events, MAX_UNDELIVERED_PER_BATCH)
            )
        return pb.ReportEventsResponse(recorded=recorded, rejected=rejected)

    def _apply(self, tenant: str, event: pb.SuggestionEvent) -> str | None:
        """Count one event; returns the reason it was rejected, or None."""
        record = self._registry.get(event.suggestion_id, tenant)
        if record is None:
            return "unknown_suggestion"
        labels = (record.language, record.mode)
        kind = event.kind
        if kind == pb.SUGGESTION_EVENT_KIND_SHOWN:
            if record.shown:
                return "duplicate"
            record.shown = True
            metrics.SUGGESTIONS_SHOWN.labels(*labels).inc()
            metrics.SUGGESTION_CHARS_SHOWN.labels(*labels).inc(record.length)
            attribution.count_shown(record.context, event)
            if 0 < event.client_latency_ms < 600_000:
                metrics.STAGE_DURATION.labels("client_end_to_end").observe(
                    event.client_latency_ms / 1e3
                )
            return None
        if kind in (pb.SUGGESTION_EVENT_KIND_ACCEPTED, pb.SUGGESTION_EVENT_KIND_PARTIALLY_ACCEPTED):
            whole = kind == pb.SUGGESTION_EVENT_KIND_ACCEPTED
            if event.chars > record.length:
                metrics.EVENTS_REJECTED.labels("clamped").inc()
            if whole:
                # The accept inserted `chars` (the rest after any type-ahead; 0 means all).
                inserted = event.chars or record.length
                target = min(record.length, record.accepted_chars + inserted)
            else:  # cumulative accepted length, as Copilot's partial accept reports it
                target = min(event.chars, record.length)
            added = target - record.accepted_chars
            if added <= 0:
                return "duplicate"
            if not record.shown:  # an accepted suggestion was shown, whatever the client said
                self._apply(
                    tenant,
                    pb.SuggestionEvent(
                        suggestion_id=event.suggestion_id,
                        kind=pb.SUGGESTION_EVENT_KIND_SHOWN,
                        origin=event.origin,
                    ),
                )
            first = record.accepted_chars == 0
            record.accepted_chars = target
            metrics.SUGGESTION_CHARS_ACCEPTED.labels(*labels).inc(added)
            self._tenants.count_accepted(tenant, added, whole)
            if whole:
                metrics.SUGGESTIONS_ACCEPTED.labels(*labels).inc()
            elif first:
                metrics.SUGGESTIONS_PARTIALLY_ACCEPTED.labels(*labels).inc()
            if first:
                attribution.count_accepted(record.context, event)
            return None
        if kind == pb.SUGGESTION_EVENT_KIND_REJECTED:
            if record.rejected or record.accepted_chars:
                return "duplicate"
            record.rejected = True
            metrics.SUGGESTIONS_REJECTED.labels(*labels).inc()
            return None
        if kind == pb.SUGGESTION_EVENT_KIND_RETAINED:
            return count_retained(record, event)
        return "unknown_kind"


def bounded_typed_chars(typed: Mapping[str, int]) -> tuple[dict[str, int], bool]:
    """Characters typed per language label, at most MAX_TYPED_CHARS_PER_BATCH in the whole
    batch, and whether anything was cut. The bound is on the batch, not per key: 5,000 made-up
    languages at a per-key cap each once added 5x10^8 characters in one request."""
    per_label: Counter[str] = Counter()
    for language, chars in typed.items():
        per_label[metrics.language_label(language)] += max(chars, 0)
    budget = MAX_TYPED_CHARS_PER_BATCH
    bounded: dict[str, int] = {}
    for label, chars in sorted(per_label.items()):
        taken = min(chars, budget)
        budget -= taken
        if taken:
            bounded[label] = taken
    return bounded, sum(per_label.values()) > MAX_TYPED_CHARS_PER_BATCH


def new_record(
    tenant: str, language: str, mode: str, length: int, context: str = "none"
) -> SuggestionRecord:
    return SuggestionRecord(
        tenant=tenant,
        language=metrics.language_label(language),
        mode=mode,
        length=length,
        context=context,
    )
