"""Search over API entries: dense (sentence embeddings in FAISS), lexical (BM25) and name
matching, fused by reciprocal rank.

Dense finds entries by meaning ("read a csv into a dataframe"), BM25 by shared words, and the
name ranking makes partial names ("from_fi", "magic.from") work, which token-based signals miss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from quill.v1 import quill_pb2 as pb
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import BM25Index
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


class ApiIndex:
    """Entries by integer id, searchable; add/remove are incremental. Thread-safe."""

    def __init__(self, dimension: int) -> None:
        self._entries: dict[int, pb.ApiEntry] = {}
        self._lexical = BM25Index()
        self._vectors = VectorIndex(dimension)
        self._next_id = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[pb.ApiEntry]:
        with self._lock:
            return list(self._entries.values())

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
        with self._lock:
            rankings: list[list[int]] = []
            if query_vector is not None and len(self._entries):
                ids, _ = self._vectors.search(query_vector.reshape(1, -1), _CANDIDATES)
                rankings.append([int(i) for i in ids[0] if i >= 0])
            rankings.append([i for i, _ in self._lexical.search(query, _CANDIDATES)])
            if _looks_like_name(query):
                rankings.append(self._name_ranking(query.strip()))
            fused = reciprocal_rank_fusion([r for r in rankings if r])
            # A re-exported name (json.JSONDecoder) and its definition (json.decoder.JSONDecoder)
            # are one API: the first (best-ranked) of them stands for both.
            found: list[ScoredEntry] = []
            seen: set[tuple[str, ...]] = set()
            for entry_id, score in fused:
                entry = self._entries[entry_id]
                tail = entry.qualified_name.split(".")[-2 if entry.kind == "method" else -1 :]
                key = (entry.kind, entry.signature, entry.summary, *tail)
                if entry.kind != "module" and key in seen:
                    continue
                seen.add(key)
                found.append(ScoredEntry(entry, score))
                if len(found) == k:
                    break
            return found

    def _name_ranking(self, query: str) -> list[int]:
        """Entries whose name contains `query`: last-part prefix first, then shorter names."""
        needle = query.lower()
        scored: list[tuple[int, int, int]] = []
        for entry_id, entry in self._entries.items():
            name = entry.qualified_name.lower()
            last = name.rsplit(".", 1)[-1]
            if (
                name.endswith(needle)
                or last.startswith(needle.rsplit(".", 1)[-1])
                and ("." not in needle or needle in name)
            ):
                scored.append((0, len(name), entry_id))
            elif needle in name:
                scored.append((1, len(name), entry_id))
        scored.sort()
        return [entry_id for _, _, entry_id in scored[:_CANDIDATES]]
