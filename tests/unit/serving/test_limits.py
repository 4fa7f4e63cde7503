"""Every cap of serving.config.LimitsConfig: hit through the real serving layer (scripted
engine), refused with RESOURCE_EXHAUSTED and a message naming the flag, and serving healthy
afterwards; idle workspaces leave memory and come back from disk; packages are stored one file
each and blobs no file holds are deleted."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quill import envs
from quill.channel import ClientSecurity, open_channel
from quill.tokens import hash_token, new_token
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from retrieval.embedding import Embedder
from serving.api_search.service import ApiSearchService
from serving.config import LimitsConfig, SecurityConfig
from serving.workspace_registry import WorkspaceRegistry
from serving.workspaces import WorkspaceKey
from tests.conftest import in_process_serving
from tests.support.fakes import ScriptedEngine

TENANT = "alice"


def _file(path: str, text: str) -> pb.WorkspaceFile:
    return pb.WorkspaceFile(path=path, content=text)


def _package(name: str, entries: int, digest: str = "d1") -> pb.ApiPackage:
    return pb.ApiPackage(
        name=name,
        version="1",
        digest=digest,
        entries=[
            pb.ApiEntry(qualified_name=f"{name}.f{i}", kind="function", signature=f"f{i}()")
            for i in range(entries)
        ],
    )


async def _refused(call: object) -> str:
    """The details of a call that must fail with RESOURCE_EXHAUSTED."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value
    return refused.value.details() or ""


async def _still_serving(address: str, security: ClientSecurity | None = None) -> None:
    async with open_channel(address, security) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = quill_pb2_grpc.QuillStub(channel)
        responses = [r async for r in stub.Complete(pb.CompleteRequest(prefix="x = "))]
        assert responses[-1].done.suggestion_id


async def test_workspace_caps_refuse_clearly_and_serving_stays_up() -> None:
    limits = LimitsConfig(
        files_per_workspace=3,
        bytes_per_workspace=1000,
        packages_per_workspace=2,
        bytes_per_package=2000,
        workspaces_per_tenant=2,
    )
    engine = ScriptedEngine(chunks=["1"])
    async with in_process_serving(engine, limits=limits) as address:
        async with open_channel(address) as channel:
            stub = quill_pb2_grpc.QuillStub(channel)

            def sync(**fields: object) -> object:
                return stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id="w", **fields))

            # Files: a manifest announcing four files is refused before any is sent.
            manifest = [pb.FileDigest(path=f"f{i}.py", sha256="0" * 64) for i in range(4)]
            message = await _refused(sync(manifest=manifest, manifest_complete=True))
            assert message == (
                "the workspace would hold 4 files; the limit is 3 per workspace "
                "(quill serve --files-per-workspace)"
            )
            await sync(files=[_file(f"f{i}.py", "x = 1\n") for i in range(3)])
            message = await _refused(sync(files=[_file("f3.py", "x = 1\n")]))
            assert "4 files" in message
            # Replacing a file is not growth.
            await sync(files=[_file("f0.py", "y = 2\n")])
            # Bytes.
            message = await _refused(sync(files=[_file("f1.py", "#" * 1200)]))
            assert message == (
                "the workspace would hold 1,212 bytes of files; the limit is 1,000 bytes per "
                "workspace (quill serve --bytes-per-workspace)"
            )
            # Packages: count and size.
            small = [_package("a", 2), _package("b", 2), _package("c", 2)]
            message = await _refused(
                sync(package_manifest=[pb.FileDigest(path=p.name, sha256="d1") for p in small])
            )
            assert "3 API packages; the limit is 2" in message
            assert "--packages-per-workspace" in message
            message = await _refused(sync(packages=[_package("huge", 200)]))
            assert message.startswith("API package 'huge' is ")
            assert message.endswith(
                " bytes; the limit is 2,000 bytes per package (quill serve --bytes-per-package)"
            )
            await sync(packages=small[:2])
            # Workspaces per tenant (both are in use, so none may be replaced).
            await stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id="second"))
            message = await _refused(
                stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id="third"))
            )
            assert "already keeps 2 workspaces on this server; the limit is 2" in message
            assert "--workspaces-per-tenant" in message
            status = (await sync()).status
            assert (status.api_entries, status.files_skipped) == (4, 0)
        await _still_serving(address)


async def test_streams_per_tenant_are_capped_per_tenant(tmp_path: Path) -> None:
    alice, bob = new_token(), new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {hash_token(alice)}\nbob {hash_token(bob)}\n")
    engine = ScriptedEngine(chunks=["a"] * 40, step_delay_s=0.1)
    security = SecurityConfig(token_file=tokens)
    limits = LimitsConfig(streams_per_tenant=2)
    async with in_process_serving(engine, security=security, limits=limits) as address:
        async with (
            open_channel(address, ClientSecurity(token=alice)) as a,
            open_channel(address, ClientSecurity(token=bob)) as b,
        ):
            request = pb.CompleteRequest(
                prefix="x = ",
                mode=pb.COMPLETION_MODE_SINGLE_LINE,
                limits=pb.CompletionLimits(max_tokens=40),
            )
            streams = [quill_pb2_grpc.QuillStub(a).Complete(request) for _ in range(2)]
            for stream in streams:
                await stream.read()  # open and generating
            third = quill_pb2_grpc.QuillStub(a).Complete(request)
            message = await _refused(third.read())
            assert message == (
                "Complete: this tenant already has 2 streams open; the limit is 2 "
                "(quill serve --streams-per-tenant)"
            )
            # Another tenant is not affected.
            responses = [r async for r in quill_pb2_grpc.QuillStub(b).Complete(request)]
            assert responses[-1].done.suggestion_id
            for stream in streams:
                stream.cancel()
            for _ in range(50):  # the server sees the cancellations
                try:
                    fresh = [r async for r in quill_pb2_grpc.QuillStub(a).Complete(request)]
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            assert fresh[-1].done.suggestion_id
        await _still_serving(address, ClientSecurity(token=alice))


def test_the_least_recently_used_workspace_leaves_memory_and_comes_back(
    embedder: Embedder, tmp_path: Path
) -> None:
    async def run() -> None:
        limits = LimitsConfig(resident_workspaces=2)
        registry = WorkspaceRegistry(tmp_path, lambda: embedder, limits=limits)
        # The standard library's part comes from the cache serving uses (built once).
        service = ApiSearchService(lambda: embedder, envs.cache_dir() / "api-stdlib", registry)
        keys = [WorkspaceKey(TENANT, name) for name in ("one", "two", "three")]
        for key in keys[:2]:
            await registry.sync(
                TENANT,
                pb.SyncWorkspaceRequest(
                    workspace_id=key.workspace_id,
                    files=[_file("m.py", f"def {key.workspace_id}_function():\n    pass\n")],
                    packages=[_package("pkg", 3)],
                ),
            )
        await service.loaded(keys[0])
        assert keys[0] in service._catalogs
        assert registry.get(keys[1]) is not None  # used after "one": "one" is the oldest
        await registry.sync(TENANT, pb.SyncWorkspaceRequest(workspace_id="three"))
        assert [w.key for w in registry.workspaces()] == keys[1:]
        assert keys[0] not in service._catalogs, "its API catalog left memory too"
        back = registry.get(keys[0])  # loaded again from disk
        assert back is not None and back.paths() == ["m.py"]
        assert back.packages()["pkg"] == _package("pkg", 3)
        await back.wait_indexed()
        hits = await asyncio.to_thread(back.search, "one_function", 1)
        assert hits[0].path == "m.py"
        catalog = await service.loaded(keys[0])
        assert "m.one_function" in catalog.names() and "pkg.f1" in catalog.names()
        assert len(registry.workspaces()) == 2
        await service.close()
        await registry.close()

    asyncio.run(run())


def test_idle_workspaces_leave_memory(embedder: Embedder, tmp_path: Path) -> None:
    async def run() -> None:
        registry = WorkspaceRegistry(
            tmp_path, lambda: embedder, limits=LimitsConfig(workspace_idle_s=0.2)
        )
        await registry.sync(TENANT, pb.SyncWorkspaceRequest(workspace_id="w"))
        assert len(registry.workspaces()) == 1
        for _ in range(50):
            if not registry.workspaces():
                break
            await asyncio.sleep(0.1)
        assert not registry.workspaces()
        assert registry.get(WorkspaceKey(TENANT, "w")) is not None
        await registry.close()

    asyncio.run(run())


def test_a_long_idle_workspace_makes_room_for_a_new_one(embedder: Embedder, tmp_path: Path) -> None:
    async def run() -> None:
        limits = LimitsConfig(workspaces_per_tenant=2, workspace_replace_idle_s=3600)
        registry = WorkspaceRegistry(tmp_path, lambda: embedder, limits=limits)
        for name in ("old", "recent"):
            await registry.sync(
                TENANT, pb.SyncWorkspaceRequest(workspace_id=name, files=[_file("a.py", "a")])
            )
        # Another tenant's workspaces never count against this one's.
        await registry.sync("bob", pb.SyncWorkspaceRequest(workspace_id="old"))
        old = registry.directory_of(WorkspaceKey(TENANT, "old"))
        two_hours_ago = time.time() - 7200
        os.utime(old, (two_hours_ago, two_hours_ago))
        await registry.sync(TENANT, pb.SyncWorkspaceRequest(workspace_id="new"))
        assert not old.exists()
        assert registry.get(WorkspaceKey(TENANT, "old")) is None
        assert registry.get(WorkspaceKey(TENANT, "recent")) is not None
        assert registry.get(WorkspaceKey("bob", "old")) is not None
        await registry.close()

    asyncio.run(run())


def test_packages_are_stored_one_file_each_and_old_blobs_go(
    embedder: Embedder, tmp_path: Path
) -> None:
    async def run() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder)
        key = WorkspaceKey(TENANT, "w")
        await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="w",
                packages=[_package("a", 3), _package("b", 3)],
                files=[_file("m.py", "v = 1\n")],
            ),
        )
        folder = registry.directory_of(key)
        stored = {p.name: p.stat().st_mtime_ns for p in (folder / "packages").iterdir()}
        assert len(stored) == 2 and not (folder / "packages.bin").exists()
        blobs = {p.name for p in (folder / "blobs").iterdir()}
        await asyncio.sleep(0.01)
        await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="w",
                packages=[_package("a", 4, digest="d2")],
                files=[_file("m.py", "v = 2\n")],
            ),
        )
        after = {p.name: p.stat().st_mtime_ns for p in (folder / "packages").iterdir()}
        changed = {name for name in stored if after[name] != stored[name]}
        assert len(changed) == 1, "only the changed package was written"
        assert not blobs & {p.name for p in (folder / "blobs").iterdir()}, "old blob deleted"
        workspace = registry.get(key)
        assert workspace is not None and workspace.status().api_entries == 7
        assert workspace.packages()["a"] == _package("a", 4, digest="d2")
        # Package entries are read from disk when needed, not held in memory.
        assert not workspace._packages["a"].entries
        await registry.close()

    asyncio.run(run())
