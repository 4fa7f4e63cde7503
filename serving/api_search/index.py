"""Search over API entries: dense (sentence embeddings in FAISS), lexical (BM25) and name
matching, fused by reciprocal rank.

Dense finds entries by meaning ("read a csv into a dataframe"), BM25 by shared words, and the
name ranking makes partial names ("from_fi", "magic.from") work, which token-based signals miss.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quill.v1 import quill_pb2 as pb
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import BM25Index, search_together, tokenize_code
from retrieval.vector_index import VectorIndex

Encode = Callable[[Sequence[str]], np.ndarray]

# How many candidates each signal contributes before fusion.
_CANDIDATES = 50


def entry_text(entry: pb.ApiEntry) -> str:
    """What is embedded and indexed for an entry: its name, signature and summary."""
    return f"{entry.qualified_name} {entry.signature} {entry.summary}".strip()


@dataclass(frozen=True)
class ScoredEntry:
    entry: pb.ApiEntry
    score: float


def _looks_like_name(query: str) -> bool:
    return bool(query) and " " not in query.strip() and query.replace(".", "_").isidentifier()


@dataclass(frozen=True)
class _Candidates:
    """One index's best ids for the dense and the name signal, each with a key that sorts best
    first across indices (dense: the negated score; names: the name ranking's own key)."""

    dense: list[tuple[float, int]]
    names: list[tuple[tuple[int, int], int]]


class ApiIndex:
    """Entries by integer id, searchable; add/remove are incremental. Thread-safe.

    `first_id` keeps the ids of indices searched together (search_layers) apart."""

    def __init__(self, dimension: int, first_id: int = 0) -> None:
        self._entries: dict[int, pb.ApiEntry] = {}
        self._lexical = BM25Index()
        self._vectors = VectorIndex(dimension)
        self._next_id = first_id
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[pb.ApiEntry]:
        with self._lock:
            return list(self._entries.values())

    def entry(self, entry_id: int) -> pb.ApiEntry | None:
        return self._entries.get(entry_id)

    def add(self, entries: Sequence[pb.ApiEntry], vectors: np.ndarray) -> list[int]:
        """Add entries with their (already computed) embeddings; returns their ids."""
        if len(entries) != len(vectors):
            raise ValueError(f"{len(entries)} entries but {len(vectors)} vectors")
        with self._lock:
            ids = list(range(self._next_id, self._next_id + len(entries)))
            self._next_id += len(entries)
            for entry_id, entry in zip(ids, entries, strict=True):
                self._entries[entry_id] = entry
                self._lexical.add(entry_id, entry_text(entry))
            if ids:
                self._vectors.add(ids, vectors)
            return ids

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            present = [i for i in ids if i in self._entries]
            for entry_id in present:
                del self._entries[entry_id]
            self._lexical.remove(present)
            self._vectors.remove(present)

    def search(self, query: str, query_vector: np.ndarray | None, k: int) -> list[ScoredEntry]:
        """Best `k` entries for `query`; `query_vector` (its embedding) enables the dense signal."""
        return search_layers([self], query, query_vector, k)

    def _candidates(self, query: str, query_vector: np.ndarray | None) -> _Candidates:
        with self._lock:
            dense: list[tuple[float, int]] = []
            if query_vector is not None and len(self._entries):
                ids, scores = self._vectors.search(query_vector.reshape(1, -1), _CANDIDATES)
                dense = [
                    (-float(s), int(i)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0
                ]
            names = self._name_ranking(query.strip()) if _looks_like_name(query) else []
            return _Candidates(dense, names)

    def _name_ranking(self, query: str) -> list[tuple[tuple[int, int], int]]:
        """Entries whose name contains `query`: last-part prefix first, then shorter names."""
        needle = query.lower()
        scored: list[tuple[tuple[int, int], int]] = []
        for entry_id, entry in self._entries.items():
            name = entry.qualified_name.lower()
            last = name.rsplit(".", 1)[-1]
            if (
                name.endswith(needle)
                or last.startswith(needle.rsplit(".", 1)[-1])
                and ("." not in needle or needle in name)
            ):
                scored.append(((0, len(name)), entry_id))
            elif needle in name:
                scored.append(((1, len(name)), entry_id))
        scored.sort()
        return scored[:_CANDIDATES]


def search_layers(
    layers: Sequence[ApiIndex], query: str, query_vector: np.ndarray | None, k: int
) -> list[ScoredEntry]:
    """Best `k` entries of several indices searched as one (the standard library's, shared by
    every workspace, and a workspace's own): each signal's candidates are merged by score, then
    the signals are fused by reciprocal rank."""
    found = [layer._candidates(query, query_vector) for layer in layers]
    dense = _best(pair for c in found for pair in c.dense)
    names = _best(pair for c in found for pair in c.names)
    with contextlib.ExitStack() as held:
        for layer in layers:
            held.enter_context(layer._lock)
        # BM25 with the statistics of all layers together, so their scores compare.
        lexical = search_together(
            [layer._lexical for layer in layers], tokenize_code(query), _CANDIDATES
        )
    rankings = (dense, [entry_id for entry_id, _ in lexical], names)
    fused = reciprocal_rank_fusion([r for r in rankings if r])
    # A re-exported name (json.JSONDecoder) and its definition (json.decoder.JSONDecoder)
    # are one API: the first (best-ranked) of them stands for both.
    results: list[ScoredEntry] = []
    seen: set[tuple[str, ...]] = set()
    for entry_id, score in fused:
        entry = next((e for e in (layer.entry(entry_id) for layer in layers) if e), None)
        if entry is None:  # removed meanwhile
            continue
        tail = entry.qualified_name.split(".")[-2 if entry.kind == "method" else -1 :]
        key = (entry.kind, entry.signature, entry.summary, *tail)
        if entry.kind != "module" and key in seen:
            continue
        seen.add(key)
        results.append(ScoredEntry(entry, score))
        if len(results) == k:
            break
    return results


def _best(keyed: Iterable[tuple[Any, int]]) -> list[int]:
    """Ids of the best candidates by their sort keys."""
    return [entry_id for _, entry_id in sorted(keyed)[:_CANDIDATES]]
