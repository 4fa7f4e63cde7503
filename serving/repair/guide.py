"""Decides whether a generated token may extend a patch, asking the client's completion engine.

Order of the checks (cheapest first): tokens the engine need not judge (tokens.py), the trie of
rejected prefixes, the memo of earlier answers, and only then a query to the engine. An engine
that cannot answer accepts the token (Repilot's rule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from serving.repair.memo import FeasibilityMemo
from serving.repair.tokens import common_prefix, needs_engine
from serving.repair.trie import RejectedPrefixTrie

logger = logging.getLogger(__name__)


class CompletionOracle(Protocol):
    """The client's completion engine, with the repaired file and region already known."""

    async def continuations(self, patch_so_far: str) -> list[str] | None:
        """Remaining characters of every name the engine can complete at the patch's end;
        [] when none exists, None when the engine could not answer."""
        ...

    async def unresolved_names(self, patch: str) -> list[str] | None:
        """Names in the finished patch that do not resolve; None when unknown."""
        ...


@dataclass(frozen=True)
class Verdict:
    feasible: bool
    # Characters every continuation shares: appended directly (proactive completion).
    completion: str = ""


ACCEPT = Verdict(True)
REJECT = Verdict(False)


@dataclass
class GuideStats:
    engine_queries: int = 0
    memo_hits: int = 0
    trie_prunes: int = 0
    pruned_tokens: int = 0
    unavailable: int = 0
    proactive_chars: int = 0


class CompletionGuide:
    def __init__(self, oracle: CompletionOracle, language: str) -> None:
        self._oracle = oracle
        self._language = language
        self._memo = FeasibilityMemo()
        self._trie = RejectedPrefixTrie()
        self._unavailable = 0
        self._trie_prunes = 0
        self._pruned = 0
        self._proactive_chars = 0

    @property
    def stats(self) -> GuideStats:
        return GuideStats(
            engine_queries=self._memo.queries,
            memo_hits=self._memo.hits,
            trie_prunes=self._trie_prunes,
            pruned_tokens=self._pruned + self._trie_prunes,
            unavailable=self._unavailable,
            proactive_chars=self._proactive_chars,
        )

    async def check(self, patch_so_far: str, token: str) -> Verdict:
        if not needs_engine(patch_so_far, token, self._language):
            return ACCEPT
        candidate = patch_so_far + token
        if self._trie.rejects(candidate):
            self._trie_prunes += 1
            return REJECT
        continuations = await self._memo.get(candidate, self._oracle.continuations)
        if continuations is None:
            self._unavailable += 1
            return ACCEPT
        if not continuations:
            self._trie.add(candidate)
            self._pruned += 1
            return REJECT
        completion = common_prefix(continuations)
        self._proactive_chars += len(completion)
        return Verdict(True, completion)
