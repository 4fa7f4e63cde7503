from __future__ import annotations

import numpy as np
import pytest

from retrieval.vector_index import VectorIndex


def _unit(rows: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, 16)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("hnsw_threshold", [10_000, 50])
def test_add_search_remove_update(hnsw_threshold: int) -> None:
    vectors = _unit(200)
    index = VectorIndex(16, hnsw_threshold=hnsw_threshold)
    index.add(np.arange(1000, 1200), vectors)
    assert index.is_hnsw == (hnsw_threshold < 200)
    ids, scores = index.search(vectors[7], 3)
    assert ids[0][0] == 1007 and scores[0][0] == pytest.approx(1.0, abs=1e-4)
    index.remove([1007])
    ids, _ = index.search(vectors[7], 3)
    assert 1007 not in ids[0].tolist()
    assert len(index) == 199
    # Updating an id replaces its vector.
    index.add([1008], vectors[9:10])
    ids, _ = index.search(vectors[9], 2)
    assert set(ids[0].tolist()) == {1008, 1009}
    assert len(index) == 199
    assert set(index.ids().tolist()) == set(range(1000, 1200)) - {1007}


def test_hnsw_rebuilds_when_many_are_removed_and_round_trips() -> None:
    vectors = _unit(300, seed=1)
    index = VectorIndex(16, hnsw_threshold=100)
    index.add(np.arange(300), vectors)
    index.remove(range(0, 150))
    assert len(index) == 150
    ids, _ = index.search(vectors[:150], 5)
    assert (ids < 150).sum() == 0  # removed ids never come back
    copy = VectorIndex.deserialize(index.serialize(), hnsw_threshold=100)
    assert copy.is_hnsw
    assert set(copy.ids().tolist()) == set(range(150, 300))
    ids, _ = copy.search(vectors[200], 1)
    assert ids[0][0] == 200


def test_wrong_dimension_is_refused() -> None:
    index = VectorIndex(16)
    with pytest.raises(ValueError, match="dimension 16"):
        index.add([1], np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add([1, 2], np.zeros((1, 16), dtype=np.float32))


def test_empty_index_search() -> None:
    ids, scores = VectorIndex(16).search(_unit(1), 4)
    assert ids.tolist() == [[-1, -1, -1, -1]]
