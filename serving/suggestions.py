"""The suggestions serving issued recently, so reported events can be checked against them."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class SuggestionRecord:
    language: str  # already a bounded metrics label
    mode: str
    length: int
    shown: bool = False
    accepted_chars: int = 0
    rejected: bool = False
    # Kinds of context in the prompt, as a bounded label (serving/attribution.py).
    context: str = "none"
    # Retention checks (seconds after acceptance) already counted.
    retention_checks: set[int] = field(default_factory=set)


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

    def get(self, suggestion_id: str) -> SuggestionRecord | None:
        return self._records.get(suggestion_id)

    def __len__(self) -> int:
        return len(self._records)
