"""The suggestion registry kept across a restart of serving: saved under the data dir, bounded,
read back as untrusted input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from serving import suggestions
from serving.events import new_record
from serving.suggestions import SuggestionRecord, SuggestionRegistry


def test_a_saved_registry_is_loaded_with_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "suggestions.json"
    first = SuggestionRegistry(path=path)
    first.add("a", new_record("alice", "python", "single", 10))
    first.add("b", new_record("bob", "rust", "multi", 30))
    record = first.get("a", "alice")
    assert record is not None
    record.shown, record.accepted_chars = True, 4
    first.touch()
    first.save()

    second = SuggestionRegistry(path=path)
    second.load()
    assert second.get("a", "alice") == SuggestionRecord(
        "alice", "python", "single", 10, True, 4, False
    )
    assert second.get("b", "bob") == SuggestionRecord("bob", "rust", "multi", 30)
    # Loaded records still belong to their tenant only.
    assert second.get("a", "bob") is None
    assert len(second) == 2


def test_only_the_newest_records_are_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suggestions, "PERSISTED_RECORDS", 3)
    path = tmp_path / "suggestions.json"
    registry = SuggestionRegistry(path=path)
    for name in "abcde":
        registry.add(name, new_record("t", "python", "single", 1))
    registry.save()
    loaded = SuggestionRegistry(path=path, capacity=2)
    loaded.load()
    # Three newest saved (c, d, e); a registry of capacity 2 keeps the newest two.
    assert [n for n in "abcde" if loaded.get(n, "t")] == ["d", "e"]
    assert len(json.loads(path.read_text())["records"]) == 3


def test_malformed_records_and_files_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "suggestions.json"
    good = ["ok", "t", "python", "single", 5, False, 0, False, "none", []]
    rest = ["none", []]  # context label, retention checks counted
    rows = [
        good,
        ["x" * 65, "t", "python", "single", 5, False, 0, False, *rest],  # id too long
        ["m", "t", "python", "sideways", 5, False, 0, False, *rest],  # unknown mode
        ["n", "t", "python", "single", 5, False, 6, False, *rest],  # accepted more than its length
        ["o", "t", "python", "single", True, False, 0, False, *rest],  # length not an int
        ["q", 7, "python", "single", 5, False, 0, False, *rest],  # tenant not a string
        ["r", "t", "python", "single", 5, False, 0, False, "secrets", []],  # unknown context
        ["s", "t", "python", "single", 5, False, 0, False, "retrieval+open_document", []],  # order
        ["u", "t", "python", "single", 5, False, 0, False, "none", [7]],  # not a check delay
        ["p", "t", "klingon", "multi", 5, True, 2, False, "open_document+retrieval", [30]],
        ["short"],
        "not a row",
    ]
    path.write_text(json.dumps({"version": 3, "records": rows}))
    registry = SuggestionRegistry(path=path)
    registry.load()
    assert len(registry) == 2
    # An unknown language label becomes "other"; the context and the checks counted come back.
    assert registry.get("p", "t") == SuggestionRecord(
        "t", "other", "multi", 5, True, 2, False, "open_document+retrieval", {30}
    )

    # Version 2 (before contexts and checks were kept), a future version, garbage.
    old = json.dumps({"version": 2, "records": [good[:8]]})
    for text in ("{not json", old, json.dumps({"version": 99, "records": [good]}), "[1, 2]"):
        path.write_text(text)
        ignored = SuggestionRegistry(path=path)
        ignored.load()
        assert len(ignored) == 0


async def test_changes_are_saved_periodically(tmp_path: Path) -> None:
    path = tmp_path / "data" / "suggestions.json"
    registry = SuggestionRegistry(path=path)
    saver = asyncio.create_task(registry.save_periodically(0.01))
    try:
        registry.add("a", new_record("t", "python", "single", 3))
        for _ in range(300):
            if path.exists():
                break
            await asyncio.sleep(0.01)
    finally:
        saver.cancel()
    assert json.loads(path.read_text())["records"] == [
        ["a", "t", "python", "single", 3, False, 0, False, "none", []]
    ]
