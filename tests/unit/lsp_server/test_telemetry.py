"""Telemetry that a client cannot poison: bad values are made well-typed where they come in or
dropped one by one, never the batch, and the flusher outlives any failure. Through the real
language server and the real gRPC serving layer (scripted engine)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pytest_lsp import LanguageClient

from lsp_server.telemetry import Telemetry, language_label
from quill.v1 import quill_pb2 as pb
from tests.conftest import ROOT, in_process_serving
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete_at_end, edit, execute, initialize, open_document
from tests.support.metrics import metric, suggestions_counted

URI = (ROOT / "tests" / "data" / "sample.py").as_uri()
POISON_URI = (ROOT / "tests" / "data" / "poison.txt").as_uri()
ROUNDS = 10  # each a shown and an accepted event


def test_language_labels_are_strings_protobuf_can_encode() -> None:
    assert language_label("python") == "python"
    for bad in (5, None, "", "\ud800", ["python"]):
        assert language_label(bad) == "other"


async def test_a_bad_value_costs_one_event_and_the_flusher_survives_a_failing_send() -> None:
    sent: list[pb.ReportEventsRequest] = []
    failures = [RuntimeError("boom")]

    async def send(request: pb.ReportEventsRequest) -> bool:
        if failures:
            raise failures.pop()
        sent.append(request)
        return True

    telemetry = Telemetry(send, flush_interval_s=0.01)
    telemetry.returned("s1", "file:///a.py", "x", "python", 0.1)
    telemetry.returned("\ud800", "file:///b.py", "y", "python", 0.1)  # cannot be encoded
    telemetry.text_inserted("file:///a.py", "z", 5)  # type: ignore[arg-type]
    telemetry.text_inserted("file:///a.py", 7, "python")  # type: ignore[arg-type]
    for _ in range(200):
        if sent:
            break
        await asyncio.sleep(0.01)
    (request,) = sent
    assert [e.suggestion_id for e in request.events] == ["s1"]
    assert dict(request.typed_chars) == {"other": 1}
    assert request.undelivered_events == 1
    assert (telemetry.malformed_total, telemetry.delivered_total) == (1, 1)


@pytest.mark.parametrize("language_id", [5, "\ud800"])
async def test_a_poisoned_document_does_not_stop_events_reaching_serving(
    client: LanguageClient, language_id: Any
) -> None:
    shown, accepted = suggestions_counted()
    typed_other = metric("quill_chars_typed_total", language="other")
    async with in_process_serving(ScriptedEngine(chunks=["a + b"])) as address:
        await initialize(client, servingAddress=address)
        # lsprotocol's types do not check field types: the bad id goes out as written.
        open_document(client, POISON_URI, "x = ", language=language_id)
        edit(client, POISON_URI, 2, (0, 4), (0, 4), "1")
        text = "def add(a, b):\n    return "
        open_document(client, URI, text)
        for _ in range(ROUNDS):
            item = (await complete_at_end(client, URI, text)).items[0]
            await execute(client, item.command.command, *item.command.arguments)
        stats: dict[str, Any] = {}
        for _ in range(100):  # events are batched every 2 s
            stats = await execute(client, "quill.stats")
            if stats["eventsDelivered"] >= 2 * ROUNDS:
                break
            await asyncio.sleep(0.1)
    assert stats["eventsDelivered"] == 2 * ROUNDS, stats
    assert (stats["eventsDropped"], stats["eventsMalformed"]) == (0, 0)
    assert suggestions_counted() == (shown + ROUNDS, accepted + ROUNDS)
    # The keystroke in the poisoned document counts, under "other".
    assert metric("quill_chars_typed_total", language="other") == typed_other + 1
