"""One real serving process (vLLM on the default model) for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from quill_cli.launcher import ServingProcess


def serving_log_dir() -> Path:
    path = Path(os.environ.get("QUILL_TEST_LOG_DIR", "test-output"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def real_serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingProcess]:
    # Synced workspaces and their indices live in the session's temporary directory.
    data_dir = tmp_path_factory.mktemp("serving-data")
    serving = ServingProcess(
        # Tests that open this repository sync it, and this serving indexes it in the
        # background for minutes on two cores; a query embedding beside that indexing takes
        # longer than the production deadline (0.25 s), which would leave the retrieval test's
        # completions without context. The deadline itself is unit-tested
        # (tests/unit/serving/test_context.py).
        extra_args=["--data-dir", str(data_dir), "--retrieval-timeout-s", "3"],
        log_path=serving_log_dir() / "serving-session.log",
    )
    serving.start(timeout_s=900)
    try:
        yield serving
    finally:
        code = serving.stop()
        assert code == 0, f"serving exited with {code}; see {serving.log_path}"
