"""ReportEvents validation on serving, and the language server's event bookkeeping."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from lsp_server.telemetry import Telemetry
from quill.v1 import quill_pb2 as pb
from serving.events import (
    MAX_EVENTS_PER_BATCH,
    MAX_TYPED_CHARS_PER_BATCH,
    EventRecorder,
    new_record,
)
from serving.suggestions import SuggestionRegistry


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def event(suggestion_id: str, kind: int, chars: int = 0) -> pb.SuggestionEvent:
    return pb.SuggestionEvent(suggestion_id=suggestion_id, kind=kind, chars=chars)


TENANT = "alice"
SHOWN = pb.SUGGESTION_EVENT_KIND_SHOWN
ACCEPTED = pb.SUGGESTION_EVENT_KIND_ACCEPTED
PARTIAL = pb.SUGGESTION_EVENT_KIND_PARTIALLY_ACCEPTED
REJECTED = pb.SUGGESTION_EVENT_KIND_REJECTED


@pytest.fixture
def recorder_and_ids():  # type: ignore[no-untyped-def]
    registry = SuggestionRegistry()
    ids = [uuid.uuid4().hex for _ in range(3)]
    for suggestion_id in ids:
        registry.add(suggestion_id, new_record(TENANT, "lua", "multi", 10))
    return EventRecorder(registry), ids


def test_shown_and_accepted_are_counted_by_serving_labels(recorder_and_ids) -> None:  # type: ignore[no-untyped-def]
    recorder, (a, b, c) = recorder_and_ids
    base = {name: value(name, language="lua", mode="multi") for name in (
        "quill_suggestions_shown_total", "quill_suggestions_accepted_total",
        "quill_suggestion_chars_accepted_total", "quill_suggestions_rejected_total",
        "quill_suggestions_partially_accepted_total", "quill_suggestion_chars_shown_total",
    )}  # fmt: skip
    response = recorder.record(
        TENANT,
        pb.ReportEventsRequest(
            events=[
                event(a, SHOWN), event(a, ACCEPTED, 10),
                event(b, SHOWN), event(b, PARTIAL, 4),
                event(c, SHOWN), event(c, REJECTED),
            ]
        )
    )  # fmt: skip
    assert (response.recorded, response.rejected) == (6, 0)

    def delta(name: str) -> float:
        return value(name, language="lua", mode="multi") - base[name]

    assert delta("quill_suggestions_shown_total") == 3
    assert delta("quill_suggestion_chars_shown_total") == 30
    assert delta("quill_suggestions_accepted_total") == 1
    assert delta("quill_suggestions_partially_accepted_total") == 1
    assert delta("quill_suggestion_chars_accepted_total") == 14
    assert delta("quill_suggestions_rejected_total") == 1


def test_forged_and_repeated_events_are_rejected_and_counted(recorder_and_ids) -> None:  # type: ignore[no-untyped-def]
    recorder, (a, _, _) = recorder_and_ids
    unknown = value("quill_events_rejected_total", reason="unknown_suggestion")
    duplicate = value("quill_events_rejected_total", reason="duplicate")
    chars = value("quill_suggestion_chars_accepted_total", language="lua", mode="multi")
    response = recorder.record(
        TENANT,
        pb.ReportEventsRequest(
            events=[
                event("forged", ACCEPTED, 1000),
                event(a, PARTIAL, 1_000_000),  # clamped to the suggestion's 10 characters
                event(a, ACCEPTED, 10),  # nothing left to accept
                event(a, SHOWN), event(a, SHOWN),  # accepting implied shown
                event(a, REJECTED),  # already accepted
            ]
        )
    )  # fmt: skip
    assert (response.recorded, response.rejected) == (1, 5)
    assert value("quill_events_rejected_total", reason="unknown_suggestion") == unknown + 1
    assert value("quill_events_rejected_total", reason="duplicate") == duplicate + 4
    assert value("quill_events_rejected_total", reason="clamped") >= 1
    assert (
        value("quill_suggestion_chars_accepted_total", language="lua", mode="multi") == chars + 10
    )


def test_floods_huge_counts_and_made_up_languages_are_bounded(recorder_and_ids) -> None:  # type: ignore[no-untyped-def]
    recorder, _ = recorder_and_ids
    flood = value("quill_events_rejected_total", reason="flood")
    other = value("quill_chars_typed_total", language="other")
    response = recorder.record(
        TENANT,
        pb.ReportEventsRequest(
            events=[event("x", SHOWN)] * (MAX_EVENTS_PER_BATCH + 5),
            typed_chars={"klingon-" + uuid.uuid4().hex: 10**12},
            undelivered_events=3,
        ),
    )
    assert response.rejected == MAX_EVENTS_PER_BATCH + 5
    assert value("quill_events_rejected_total", reason="flood") == flood + 5
    assert value("quill_chars_typed_total", language="other") == other + 100_000
    labels = {s.labels.get("language") for m in REGISTRY.collect() for s in m.samples}
    assert not any(str(label).startswith("klingon") for label in labels)


def test_registry_is_bounded() -> None:
    registry = SuggestionRegistry(capacity=2)
    for name in "abc":
        registry.add(name, new_record(TENANT, "python", "single", 1))
    assert len(registry) == 2 and registry.get("a", TENANT) is None
    assert registry.get("c", TENANT) is not None


async def test_telemetry_batches_supersedes_and_retries() -> None:
    sent: list[pb.ReportEventsRequest] = []
    deliver = False

    async def send(request: pb.ReportEventsRequest) -> bool:
        if deliver:
            sent.append(request)
        return deliver

    telemetry = Telemetry(send, flush_interval_s=3600, max_queued=3)
    telemetry.returned("s1", "file:///a.py", "return x", "python", 0.1)
    telemetry.text_inserted("file:///a.py", "return x", "python")  # the accept's insertion
    telemetry.text_inserted("file:///a.py", "y", "python")  # typed
    telemetry.text_inserted("file:///a.py", "z" * 500, "python")  # a paste, not typing
    telemetry.returned("s2", "file:///a.py", "pass", "python", 0.1)  # supersedes s1
    assert telemetry.accepted("s2") is not None
    assert telemetry.accepted("s2") is None  # once
    # Queue: shown s1, rejected s1, shown s2, accepted s2 -> one dropped (max 3).
    assert not await telemetry.flush()  # serving down: kept for later
    deliver = True
    assert await telemetry.flush()
    (request,) = sent
    kinds = [(e.suggestion_id, e.kind) for e in request.events]
    assert kinds == [("s1", REJECTED), ("s2", SHOWN), ("s2", ACCEPTED)]
    assert request.undelivered_events == 1
    assert dict(request.typed_chars) == {"python": 1}
    assert telemetry.undelivered == 0 and await telemetry.flush()
    assert len(sent) == 1  # nothing new to send


async def test_a_batch_serving_did_not_take_is_sent_again_without_a_new_event() -> None:
    answers = [False, False, True]
    sent: list[pb.ReportEventsRequest] = []

    async def send(request: pb.ReportEventsRequest) -> bool:
        ok = answers.pop(0) if answers else True
        if ok:
            sent.append(request)
        return ok

    telemetry = Telemetry(send, flush_interval_s=0.01)
    telemetry.returned("s1", "file:///a.py", "return x", "python", 0.1)
    for _ in range(200):
        if sent:
            break
        await asyncio.sleep(0.01)
    assert [e.suggestion_id for e in sent[0].events] == ["s1"]
    assert answers == []  # two failed deliveries, then the third took it


def _typed_total() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "quill_chars_typed"
        for sample in metric.samples
        if sample.name == "quill_chars_typed_total"
    )


def test_typed_characters_are_bounded_per_batch_across_all_languages(recorder_and_ids) -> None:  # type: ignore[no-untyped-def]
    recorder, _ = recorder_and_ids
    before = _typed_total()
    invented = {f"lang-{i}": 100_000 for i in range(5_000)}
    recorder.record(TENANT, pb.ReportEventsRequest(typed_chars=invented))
    assert _typed_total() - before == MAX_TYPED_CHARS_PER_BATCH
    # Real languages share the same batch budget.
    before = _typed_total()
    recorder.record(
        TENANT, pb.ReportEventsRequest(typed_chars={"python": 80_000, "go": 80_000, "rust": 5})
    )
    assert _typed_total() - before == MAX_TYPED_CHARS_PER_BATCH
    # An honest batch is counted whole.
    before_python = value("quill_chars_typed_total", language="python")
    recorder.record(TENANT, pb.ReportEventsRequest(typed_chars={"python": 120, "lua": 30}))
    assert value("quill_chars_typed_total", language="python") - before_python == 120


def _tenant_samples(tenant: str) -> list[tuple[str, float]]:
    return [
        (sample.name, sample.value)
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.labels.get("tenant") == tenant
    ]


async def test_tenants_are_metric_labels_only_when_the_operator_opts_in(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from quill.channel import ClientSecurity, open_channel
    from quill.tokens import hash_token, new_token
    from quill.v1 import quill_pb2_grpc
    from serving.config import SecurityConfig
    from tests.conftest import in_process_serving
    from tests.support.fakes import ScriptedEngine

    names = [f"t{uuid.uuid4().hex[:8]}" for _ in range(3)]
    tokens = {name: new_token() for name in names}
    path = tmp_path / "tokens"
    path.write_text("".join(f"{n} {hash_token(t)}\n" for n, t in tokens.items()))
    security = SecurityConfig(token_file=path)

    async def use_serving(labels: int) -> None:
        engine = ScriptedEngine(chunks=["1"])
        async with in_process_serving(engine, security=security, tenant_labels=labels) as address:
            for name in names:
                async with open_channel(address, ClientSecurity(token=tokens[name])) as channel:
                    stub = quill_pb2_grpc.QuillStub(channel)
                    done = [r async for r in stub.Complete(pb.CompleteRequest(prefix="x = "))]
                    suggestion = done[-1].done.suggestion_id
                    await stub.ReportEvents(
                        pb.ReportEventsRequest(events=[event(suggestion, ACCEPTED)])
                    )

    other_before = value("quill_tenant_requests_total", tenant="other", method="Complete")
    await use_serving(labels=0)
    assert not any(_tenant_samples(name) for name in names)
    assert value("quill_tenant_requests_total", tenant="other", method="Complete") == other_before
    await use_serving(labels=2)
    first, second, third = names
    assert value("quill_tenant_requests_total", tenant=first, method="Complete") == 1
    assert value("quill_tenant_suggestions_accepted_total", tenant=second) == 1
    assert value("quill_tenant_suggestion_chars_accepted_total", tenant=second) == 1
    assert not _tenant_samples(third), "past the bound a tenant is 'other'"
    other = value("quill_tenant_requests_total", tenant="other", method="Complete")
    assert other == other_before + 1
    # The fleet-wide series never carry a tenant label.
    for metric in REGISTRY.collect():
        if metric.name.startswith("quill_") and not metric.name.startswith("quill_tenant_"):
            assert all("tenant" not in s.labels for s in metric.samples), metric.name


RETAINED = pb.SUGGESTION_EVENT_KIND_RETAINED
TYPE_AHEAD = pb.SUGGESTION_ORIGIN_TYPE_AHEAD
FRESH = pb.SUGGESTION_ORIGIN_FRESH


def retained(
    suggestion_id: str, chars: int, after_s: int, origin: int = FRESH
) -> pb.SuggestionEvent:
    return pb.SuggestionEvent(
        suggestion_id=suggestion_id,
        kind=RETAINED,
        chars=chars,
        retained_after_s=after_s,
        origin=origin,  # type: ignore[arg-type]
    )


def test_retention_checks_count_once_each_by_language_mode_and_delay() -> None:
    registry = SuggestionRegistry()
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    registry.add(a, new_record(TENANT, "ruby", "single", 12, context="open_document+retrieval"))
    registry.add(b, new_record(TENANT, "ruby", "single", 8))
    recorder = EventRecorder(registry)
    labels = {"language": "ruby", "mode": "single"}
    before = {
        (name, after): value(name, **labels, after=after)
        for name in (
            "quill_suggestion_chars_retained_total",
            "quill_suggestion_chars_checked_total",
        )
        for after in ("30s", "120s")
    }
    rejected = {r: value("quill_events_rejected_total", reason=r) for r in
                ("unknown_check", "duplicate", "not_accepted", "clamped")}  # fmt: skip
    response = recorder.record(
        TENANT,
        pb.ReportEventsRequest(
            events=[
                retained(b, 5, 30),  # b was never accepted
                event(a, SHOWN), event(a, ACCEPTED, 12),
                retained(a, 12, 30), retained(a, 7, 120),
                retained(a, 3, 120),  # the same check again
                retained(a, 5, 45),  # not a check delay
                event(b, SHOWN), event(b, ACCEPTED, 8),
                retained(b, 999, 30, TYPE_AHEAD),  # clamped to the 8 accepted
            ]
        )
    )  # fmt: skip
    assert (response.recorded, response.rejected) == (7, 3)

    def delta(name: str, after: str) -> float:
        return value(name, **labels, after=after) - before[(name, after)]

    assert delta("quill_suggestion_chars_retained_total", "30s") == 12 + 8
    assert delta("quill_suggestion_chars_checked_total", "30s") == 12 + 8
    assert delta("quill_suggestion_chars_retained_total", "120s") == 7
    assert delta("quill_suggestion_chars_checked_total", "120s") == 12
    for reason in ("unknown_check", "duplicate", "not_accepted", "clamped"):
        assert value("quill_events_rejected_total", reason=reason) == rejected[reason] + 1, reason


def test_shown_accepted_and_retained_are_attributed_to_context_and_origin() -> None:
    registry = SuggestionRegistry()
    context = "recent_edit+api_search"  # a combination no other test uses
    ids = [uuid.uuid4().hex for _ in range(3)]
    for suggestion_id in ids:
        registry.add(suggestion_id, new_record(TENANT, "python", "multi", 10, context=context))
    recorder = EventRecorder(registry)

    def get(name: str, **labels: str) -> float:
        return value(name, context=context, **labels)

    shown_fresh = get("quill_context_suggestions_shown_total", origin="fresh")
    accepted_ahead = get("quill_context_suggestions_accepted_total", origin="type_ahead")
    accepted_fresh = get("quill_context_suggestions_accepted_total", origin="fresh")
    kept = get("quill_context_chars_retained_total", origin="type_ahead", after="600s")
    checked = get("quill_context_chars_checked_total", origin="type_ahead", after="600s")
    a, b, c = ids
    recorder.record(
        TENANT,
        pb.ReportEventsRequest(
            events=[
                pb.SuggestionEvent(suggestion_id=a, kind=SHOWN, origin=FRESH),
                pb.SuggestionEvent(suggestion_id=b, kind=SHOWN, origin=FRESH),
                pb.SuggestionEvent(suggestion_id=c, kind=SHOWN, origin=FRESH),
                # a: accepted from type-ahead (its rest), then partly kept.
                pb.SuggestionEvent(suggestion_id=a, kind=ACCEPTED, chars=10, origin=TYPE_AHEAD),
                retained(a, 6, 600, TYPE_AHEAD),
                # b: a word, then more of it: one acceptance.
                pb.SuggestionEvent(suggestion_id=b, kind=PARTIAL, chars=3, origin=FRESH),
                pb.SuggestionEvent(suggestion_id=b, kind=PARTIAL, chars=6, origin=FRESH),
            ]
        ),
    )
    assert get("quill_context_suggestions_shown_total", origin="fresh") == shown_fresh + 3
    assert (
        get("quill_context_suggestions_accepted_total", origin="type_ahead") == accepted_ahead + 1
    )
    assert get("quill_context_suggestions_accepted_total", origin="fresh") == accepted_fresh + 1
    assert get("quill_context_chars_retained_total", origin="type_ahead", after="600s") == kept + 6
    assert (
        get("quill_context_chars_checked_total", origin="type_ahead", after="600s") == checked + 10
    )


def test_context_and_origin_labels_are_bounded() -> None:
    from quill.attribution import CONTEXT_KINDS, context_label
    from serving.attribution import origin_label

    sources = [pb.ContextSource(kind=k) for k in reversed(CONTEXT_KINDS)]
    assert context_label(sources, []) == "open_document+recent_edit+retrieval+api_search"
    assert context_label([], []) == "none"
    # A tool call counts only when it returned something.
    failed = pb.ToolCall(trigger="auto", outcome="timeout")
    found = pb.ToolCall(trigger="auto", outcome="ok", results=["json.loads"])
    assert context_label([pb.ContextSource(kind="retrieval")], [failed]) == "retrieval"
    assert context_label([], [failed, found]) == "api_search"
    assert origin_label(pb.SUGGESTION_ORIGIN_STREAMED) == "streamed"
    assert origin_label(77) == "unspecified"
