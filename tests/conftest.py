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
async def in_process_serving(  # type: ignore[no-untyped-def]
    engine,
    *,
    address: str | None = None,
    data_dir: Path | None = None,
    repair=None,
    security=None,
    client_security=None,
    limits=None,
    tenant_labels=0,
    health_address="",
    **completion_overrides,
) -> AsyncIterator[str]:
    """The real gRPC serving layer on a loopback port (a free one unless `address` is given),
    with the given engine.

    `data_dir` (default: a fresh temporary one) is where it keeps workspaces and its suggestion
    registry, so a restart on the same one finds them; `security`
    (serving.config.SecurityConfig): default, the local token of this user, which clients on
    this machine (quill.channel.open_channel, `quill lsp`) find by themselves;
    `client_security` (quill.channel.ClientSecurity): how to reach it when it has TLS; `limits`
    (serving.config.LimitsConfig): the caps (default: `quill serve`'s); `tenant_labels`,
    `health_address`: `quill serve --metrics-tenant-labels`, `--health-address`.
    """
    from serving.config import (
        CompletionConfig,
        EngineConfig,
        LimitsConfig,
        RepairConfig,
        SecurityConfig,
        ServingConfig,
    )
    from serving.server import serve

    address = address or f"127.0.0.1:{free_port()}"
    config = ServingConfig(
        engine=EngineConfig(model="scripted"),
        completion=CompletionConfig(**completion_overrides),
        repair=repair or RepairConfig(),
        address=address,
        metrics_address="",
        shutdown_grace_s=0.5,
        security=security or SecurityConfig(),
        limits=limits or LimitsConfig(),
        metrics_tenant_labels=tenant_labels,
        health_address=health_address,
    )
    # Synced workspaces go to a temporary directory, never the user's cache.
    temporary = None
    if data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="quill-serving-data-")
        data_dir = Path(temporary.name)
    config.retrieval.data_dir = data_dir
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, lambda: engine, stop=stop))
    from quill_cli.launcher import wait_for_serving

    await asyncio.to_thread(wait_for_serving, address, 20, None, client_security)
    try:
        yield address
    finally:
        stop.set()
        await task
        if temporary is not None:
            temporary.cleanup()


@pytest.fixture
def scripted_engine():  # type: ignore[no-untyped-def]
    from tests.support.fakes import ScriptedEngine

    return ScriptedEngine()
