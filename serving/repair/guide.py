"""Decides whether a generated token may extend a patch, asking the client's completion engine.

Order of the checks (cheapest first): syntax (validity.SyntaxCheck: at statement ends the patch
must still parse in the file, and a block opener stays one), then, for tokens that can start or
extend a name (tokens.py), the trie of rejected prefixes, the memo of earlier answers and only
then a query to the engine; a token that closes a call asks the engine whether the call's
arguments match the callee's signature. An engine that cannot answer accepts the token
(Repilot's rule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from serving.repair.memo import FeasibilityMemo
from serving.repair.tokens import closed_call_end, common_prefix, needs_engine
from serving.repair.trie import RejectedPrefixTrie
from serving.repair.validity import SyntaxCheck

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

    async def call_problems(self, patch_so_far: str) -> list[str] | None:
        """Why calls closed in the patch so far do not match their callee's signature ([] when
        they do or the engine cannot tell); None when the engine could not answer."""
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
    syntax_prunes: int = 0
    call_prunes: int = 0


class CompletionGuide:
    def __init__(
        self, oracle: CompletionOracle, language: str, syntax: SyntaxCheck | None = None
    ) -> None:
        self._oracle = oracle
        self._language = language
        self._syntax = syntax
        self._memo = FeasibilityMemo()
        self._calls = FeasibilityMemo()
        self._trie = RejectedPrefixTrie()
        self._unavailable = 0
        self._trie_prunes = 0
        self._pruned = 0
        self._call_prunes = 0
        self._proactive_chars = 0

    @property
    def stats(self) -> GuideStats:
        syntax_prunes = self._syntax.pruned if self._syntax is not None else 0
        return GuideStats(
            engine_queries=self._memo.queries + self._calls.queries,
            memo_hits=self._memo.hits + self._calls.hits,
            trie_prunes=self._trie_prunes,
            pruned_tokens=self._pruned + self._trie_prunes + syntax_prunes + self._call_prunes,
            unavailable=self._unavailable,
            proactive_chars=self._proactive_chars,
            syntax_prunes=syntax_prunes,
            call_prunes=self._call_prunes,
        )

    async def check(self, patch_so_far: str, token: str) -> Verdict:
        if self._syntax is not None and not self._syntax.feasible(patch_so_far, token):
            return REJECT
        if (
            self._language == "python"
            and ")" in token
            and not await self._calls_match(patch_so_far, token)
        ):
            self._call_prunes += 1
            return REJECT
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

    async def _calls_match(self, patch_so_far: str, token: str) -> bool:
        """False when the token closes a call whose arguments the engine says do not match."""
        text = patch_so_far + token
        end = closed_call_end(text, len(patch_so_far))
        if end is None:
            return True
        problems = await self._calls.get(text[:end], self._oracle.call_problems)
        if problems is None:
            self._unavailable += 1
            return True
        return not problems
