"""One real embedding model for every unit test that embeds (loading it takes a couple of
seconds)."""

from __future__ import annotations

import pytest

from retrieval.embedding import Embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()
