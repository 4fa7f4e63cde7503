from __future__ import annotations

import numpy as np

from retrieval.embedding import Embedder


def test_real_model_embeds_normalised_rows_and_related_code_is_closer(embedder: Embedder) -> None:
    vectors = embedder.encode(
        [
            "def read_json(path): return json.load(open(path))",
            "load a JSON file from disk",
            "class Matrix: multiply two matrices of floats",
        ]
    )
    assert vectors.shape == (3, embedder.dimension) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.encode([]).shape == (0, 384)
