"""Fixtures shared by unit and end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from quill_cli.launcher import free_port

ROOT = Path(__file__).resolve().parent.parent

# Subprocesses (`python -m quill ...`) must import this checkout.
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def lsp_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "quill", "lsp", *extra]


@contextlib.asynccontextmanager
async def in_process_serving(engine, address=None, **completion_overrides) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The real gRPC serving layer on `address` (default: a free loopback port), with the given
    engine and a data folder of its own."""
    from serving.config import CompletionConfig, EngineConfig, ServingConfig
    from serving.server import serve

    address = address or f"127.0.0.1:{free_port()}"
    config = ServingConfig(
        engine=EngineConfig(model="scripted"),
        completion=CompletionConfig(**completion_overrides),
        address=address,
        metrics_address="",
        shutdown_grace_s=0.5,
    )
    # Synced workspaces go to a temporary directory, never the user's cache.
    data_dir = tempfile.TemporaryDirectory(prefix="quill-serving-data-")
    config.retrieval.data_dir = Path(data_dir.name)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, lambda: engine, stop=stop))
    from quill_cli.launcher import wait_for_serving

    await asyncio.to_thread(wait_for_serving, address, 20)
    try:
        yield address
    finally:
        stop.set()
        await task
        data_dir.cleanup()


@pytest.fixture
def scripted_engine():  # type: ignore[no-untyped-def]
    from tests.support.fakes import ScriptedEngine

    return ScriptedEngine()
