"""The suggestions serving issued recently, so reported events can be checked against them."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class SuggestionRecord:
    tenant: str  # who was issued it: only their events count
    language: str  # already a bounded metrics label
    mode: str
    length: int
    shown: bool = False
    accepted_chars: int = 0
    rejected: bool = False


class SuggestionRegistry:
    """Bounded by count: the oldest records go first. Events arrive seconds after a suggestion,
    so the default keeps hours of suggestions at a few MB."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._records: OrderedDict[str, SuggestionRecord] = OrderedDict()

    def add(self, suggestion_id: str, record: SuggestionRecord) -> None:
        self._records[suggestion_id] = record
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)

    def get(self, suggestion_id: str, tenant: str) -> SuggestionRecord | None:
        """The record if `tenant` was issued that suggestion (another tenant's is None too)."""
        record = self._records.get(suggestion_id)
        return record if record is not None and record.tenant == tenant else None

    def __len__(self) -> int:
        return len(self._records)
