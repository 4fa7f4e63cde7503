"""Dense vectors by chunk id in FAISS, with add, remove and exact or approximate search.

Small indices use exact inner product (IndexIDMap2 over IndexFlatIP: removal is real, search is
exact). Past `hnsw_threshold` vectors the index switches to HNSW (IndexIDMap2 over
IndexHNSWFlat), whose search cost grows with log n instead of n; HNSW cannot delete, so removed
ids become tombstones that a search filters out with an IDSelector, and the graph is rebuilt
once tombstones exceed a share of it. The threshold comes from `quill bench retrieval`
(docs/benchmarks.md): at 384 dimensions on 2 cores exact search crosses 5 ms (p50) near 50k.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import faiss
import numpy as np

logger = logging.getLogger(__name__)

# One query at a time is this index's workload, where OpenMP threads only add synchronisation:
# on a 2-core machine shared with vLLM, a 10k-vector exact search measured p50 0.7 ms with one
# thread against 65 ms with two (their barriers wait for a core the engine holds).
faiss.omp_set_num_threads(1)

DEFAULT_HNSW_THRESHOLD = 50_000
_HNSW_NEIGHBOURS = 32
_HNSW_EF_CONSTRUCTION = 80
_HNSW_EF_SEARCH = 64
# Rebuild the graph when this share of it is removed entries.
_TOMBSTONE_REBUILD_SHARE = 0.2


def _as_matrix(vectors: np.ndarray, dimension: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise ValueError(f"expected vectors of dimension {dimension}, got shape {matrix.shape}")
    return matrix


class VectorIndex:
    def __init__(self, dimension: int, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD) -> None:
        self.dimension = dimension
        self.hnsw_threshold = hnsw_threshold
        self._index: faiss.IndexIDMap2 = self._flat()
        self._hnsw = False
        self._tombstones: set[int] = set()

    @property
    def is_hnsw(self) -> bool:
        return self._hnsw

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    def ids(self) -> np.ndarray:
        stored = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if self._tombstones:
            stored = stored[~np.isin(stored, np.fromiter(self._tombstones, dtype=np.int64))]
        return stored

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        id_array = np.ascontiguousarray(ids, dtype=np.int64)
        matrix = _as_matrix(vectors, self.dimension)
        if len(id_array) != len(matrix):
            raise ValueError(f"{len(id_array)} ids for {len(matrix)} vectors")
        if len(id_array) == 0:
            return
        # An id added again replaces its vector. HNSW cannot delete, so there a collision costs
        # a rebuild; WorkspaceIndex never reuses ids, so it never pays it.
        if not self._hnsw:
            self.remove(id_array.tolist())
        else:
            stored = faiss.vector_to_array(self._index.id_map)
            if np.isin(id_array, stored).any():
                self._tombstones.update(id_array.tolist())
                self._rebuild(hnsw=True)
        self._index.add_with_ids(matrix, id_array)
        if not self._hnsw and self._index.ntotal > self.hnsw_threshold:
            self._rebuild(hnsw=True)

    def remove(self, ids: Iterable[int]) -> None:
        id_list = [int(i) for i in ids]
        if not id_list:
            return
        if not self._hnsw:
            self._index.remove_ids(np.asarray(id_list, dtype=np.int64))  # type: ignore[arg-type]  # the stubs miss this overload
            return
        present = (
            set(faiss.vector_to_array(self._index.id_map).tolist()) if len(id_list) > 64 else None
        )
        for item in id_list:
            if present is None or item in present:
                self._tombstones.add(item)
        if len(self._tombstones) > _TOMBSTONE_REBUILD_SHARE * max(1, self._index.ntotal):
            self._rebuild(hnsw=self._index.ntotal - len(self._tombstones) > self.hnsw_threshold)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and inner-product scores, shape (queries, k); missing results have id -1."""
        matrix = _as_matrix(vectors, self.dimension)
        if k <= 0 or self._index.ntotal == 0:
            empty = np.full((len(matrix), max(k, 0)), -1, dtype=np.int64)
            return empty, np.zeros(empty.shape, dtype=np.float32)
        if self._hnsw:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(_HNSW_EF_SEARCH, k)
            if self._tombstones:
                removed = np.fromiter(self._tombstones, dtype=np.int64)
                batch = faiss.IDSelectorBatch(removed)
                params.sel = faiss.IDSelectorNot(batch)
                scores, ids = self._index.search(matrix, k, params=params)
                del batch  # the selectors must outlive the search
            else:
                scores, ids = self._index.search(matrix, k, params=params)
        else:
            scores, ids = self._index.search(matrix, k)
        return ids, scores

    def serialize(self) -> np.ndarray:
        if self._tombstones:
            self._rebuild(hnsw=self._hnsw)
        return faiss.serialize_index(self._index)

    @classmethod
    def deserialize(
        cls, data: np.ndarray, hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD
    ) -> VectorIndex:
        index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError("not a Quill vector index")
        loaded = cls(index.d, hnsw_threshold)
        loaded._index = index
        loaded._hnsw = isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat)
        if loaded._hnsw:
            faiss.downcast_index(index.index).hnsw.efSearch = _HNSW_EF_SEARCH  # type: ignore[attr-defined]
        return loaded

    def _flat(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def _hnsw_index(self) -> faiss.IndexIDMap2:
        inner = faiss.IndexHNSWFlat(self.dimension, _HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = _HNSW_EF_SEARCH
        return faiss.IndexIDMap2(inner)

    def _rebuild(self, hnsw: bool) -> None:
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._index.index.reconstruct_n(0, self._index.ntotal)
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
            ids, vectors = ids[keep], vectors[keep]
        logger.info("rebuilding the vector index (%d vectors, hnsw=%s)", len(ids), hnsw)
        self._index = self._hnsw_index() if hnsw else self._flat()
        self._hnsw = hnsw
        self._tombstones = set()
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors), ids)
