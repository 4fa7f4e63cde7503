"""serving/workspaces.py on the real embedding model: the SyncWorkspace protocol, isolation,
persistence across a restart."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from pathlib import Path

import pytest

from quill.v1 import quill_pb2 as pb
from retrieval.embedding import Embedder
from serving.errors import InvalidRequestError, StorageError
from serving.workspace_registry import WorkspaceRegistry
from serving.workspaces import WorkspaceChange, WorkspaceKey

BILLING = "def compute_invoice_total(items, tax_rate):\n    return sum(items) * (1 + tax_rate)\n"
TENANT = "alice"
SHAPES = "class Circle:\n    def area(self):\n        return 3.14159 * self.radius ** 2\n"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file(path: str, text: str) -> pb.WorkspaceFile:
    return pb.WorkspaceFile(path=path, sha256=_sha(text), content=text)


async def _sync_all(registry: WorkspaceRegistry, workspace_id: str, files: dict[str, str]) -> None:
    manifest = [pb.FileDigest(path=p, sha256=_sha(t)) for p, t in files.items()]
    answer = await registry.sync(
        TENANT,
        pb.SyncWorkspaceRequest(
            workspace_id=workspace_id, manifest=manifest, manifest_complete=True
        ),
    )
    assert sorted(answer.needed_paths) == sorted(files)
    await registry.sync(
        TENANT,
        pb.SyncWorkspaceRequest(
            workspace_id=workspace_id, files=[_file(p, t) for p, t in files.items()]
        ),
    )


def test_content_hash_protocol_and_background_indexing(embedder: Embedder, tmp_path: Path) -> None:
    async def run() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder)
        changes: list[WorkspaceChange] = []
        workspace = registry.get_or_create(WorkspaceKey(TENANT, "ws"))
        workspace.add_listener(changes.append)
        await _sync_all(registry, "ws", {"shop/billing.py": BILLING, "geo/shapes.py": SHAPES})
        await workspace.wait_indexed()
        status = workspace.status()
        assert (status.files_indexed, status.files_pending, status.chunks) == (2, 0, 2)
        assert workspace.file_text("geo/shapes.py") == SHAPES
        hits = await asyncio.to_thread(workspace.search, "compute_invoice_total(cart)", 1)
        assert hits[0].path == "shop/billing.py"

        # Unchanged files are not asked for again; a changed one is.
        changed = SHAPES.replace("3.14159", "math.pi")
        answer = await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="ws",
                manifest=[
                    pb.FileDigest(path="shop/billing.py", sha256=_sha(BILLING)),
                    pb.FileDigest(path="geo/shapes.py", sha256=_sha(changed)),
                ],
                manifest_complete=True,
            ),
        )
        assert list(answer.needed_paths) == ["geo/shapes.py"]
        # A complete manifest without a file deletes it.
        await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="ws",
                manifest=[pb.FileDigest(path="geo/shapes.py", sha256=_sha(changed))],
                manifest_complete=True,
                files=[_file("geo/shapes.py", changed)],
            ),
        )
        await workspace.wait_indexed()
        assert workspace.paths() == ["geo/shapes.py"]
        hits = await asyncio.to_thread(workspace.search, "invoice total", 5)
        assert [h.path for h in hits] == ["geo/shapes.py"]
        assert "math.pi" in hits[0].text
        assert changes[-1] == WorkspaceChange(("geo/shapes.py",), ("shop/billing.py",), ())
        await registry.close()

    asyncio.run(run())


def test_bad_files_are_rejected_with_reasons(embedder: Embedder, tmp_path: Path) -> None:
    async def run() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder, max_file_bytes=100)
        answer = await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="ws",
                files=[
                    _file("../escape.py", "x = 1"),
                    _file("/etc/passwd", "x = 1"),
                    _file("bin.dat", "a\x00b"),
                    _file("big.py", "x" * 101),
                    pb.WorkspaceFile(path="lie.py", sha256="0" * 64, content="x = 1"),
                    _file("ok.py", "x = 1"),
                ],
            ),
        )
        assert dict(answer.rejected) == {
            "../escape.py": "path escapes the workspace",
            "/etc/passwd": "path escapes the workspace",
            "bin.dat": "binary",
            "big.py": "too large",
            "lie.py": "digest mismatch",
        }
        assert answer.status.files_skipped == 5
        assert registry.get(WorkspaceKey(TENANT, "ws")).paths() == ["ok.py"]  # type: ignore[union-attr]
        with pytest.raises(InvalidRequestError):
            await registry.sync(TENANT, pb.SyncWorkspaceRequest(workspace_id=""))
        await registry.close()

    asyncio.run(run())


def test_workspaces_are_isolated(embedder: Embedder, tmp_path: Path) -> None:
    async def run() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder)
        await _sync_all(registry, "alice", {"billing.py": BILLING})
        await _sync_all(registry, "bob", {"shapes.py": SHAPES})
        alice = registry.get(WorkspaceKey(TENANT, "alice"))
        bob = registry.get(WorkspaceKey(TENANT, "bob"))
        assert alice is not None and bob is not None
        await alice.wait_indexed()
        await bob.wait_indexed()
        assert alice.directory != bob.directory
        hits = await asyncio.to_thread(bob.search, "compute_invoice_total tax_rate items", 10)
        assert [h.path for h in hits] == ["shapes.py"]
        assert bob.file_text("billing.py") is None
        assert alice.paths() == ["billing.py"]
        assert registry.get(WorkspaceKey(TENANT, "carol")) is None
        # The same id under another tenant is another workspace, empty until that tenant syncs.
        assert registry.get(WorkspaceKey("mallory", "alice")) is None
        await registry.sync(
            "mallory", pb.SyncWorkspaceRequest(workspace_id="alice", manifest_complete=True)
        )
        theirs = registry.get(WorkspaceKey("mallory", "alice"))
        assert theirs is not None and theirs.paths() == [] and theirs.directory != alice.directory
        assert alice.paths() == ["billing.py"]
        await registry.close()

    asyncio.run(run())


def test_files_index_and_packages_survive_a_restart(embedder: Embedder, tmp_path: Path) -> None:
    package = pb.ApiPackage(
        name="puremagic",
        version="1.30",
        digest="abc",
        entries=[pb.ApiEntry(qualified_name="puremagic.from_file", kind="function")],
    )

    async def first() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder)
        await _sync_all(registry, "ws", {"billing.py": BILLING})
        answer = await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="ws",
                package_manifest=[pb.FileDigest(path="puremagic", sha256="abc")],
            ),
        )
        assert list(answer.needed_packages) == ["puremagic"]
        await registry.sync(TENANT, pb.SyncWorkspaceRequest(workspace_id="ws", packages=[package]))
        workspace = registry.get(WorkspaceKey(TENANT, "ws"))
        assert workspace is not None
        await workspace.wait_indexed()
        await registry.close()

    async def second() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder)
        workspace = registry.get(WorkspaceKey(TENANT, "ws"))  # found on disk
        assert workspace is not None
        assert workspace.packages()["puremagic"] == package
        await workspace.wait_indexed()
        status = workspace.status()
        assert (status.files_indexed, status.chunks, status.api_entries) == (1, 1, 1)
        hits = await asyncio.to_thread(workspace.search, "invoice total", 1)
        assert hits[0].path == "billing.py"
        answer = await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="ws",
                manifest=[pb.FileDigest(path="billing.py", sha256=_sha(BILLING))],
                package_manifest=[pb.FileDigest(path="puremagic", sha256="abc")],
            ),
        )
        assert list(answer.needed_paths) == [] and list(answer.needed_packages) == []
        await registry.close()

    asyncio.run(first())
    asyncio.run(second())


def _storage_errors(operation: str) -> float:
    from prometheus_client import REGISTRY

    labels = {"operation": operation, "reason": "no_space"}
    return REGISTRY.get_sample_value("quill_storage_errors_total", labels) or 0.0


class _Disk:
    """Makes fsync of files whose path contains `failing` fail as a full disk does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failing: str | None = None
        real = os.fsync

        def fsync(descriptor: int) -> None:
            if self.failing is not None and self.failing in os.readlink(
                f"/proc/self/fd/{descriptor}"
            ):
                raise OSError(errno.ENOSPC, "No space left on device")
            real(descriptor)

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_keeps_the_last_index_and_says_so(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.workspaces

    monkeypatch.setattr(serving.workspaces, "_SAVE_RETRY_S", 0.2)
    disk = _Disk(monkeypatch)

    async def run() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder)
        await _sync_all(registry, "ws", {"billing.py": BILLING})
        workspace = registry.get(WorkspaceKey(TENANT, "ws"))
        assert workspace is not None
        await workspace.wait_indexed()
        saved = workspace.directory / "index" / "index.quill"
        before = saved.read_bytes()

        # No room for anything: the sync fails whole, clearly, and nothing of it counts.
        disk.failing = str(tmp_path)
        sync_errors = _storage_errors("sync")
        with pytest.raises(StorageError, match="data folder is full") as raised:
            await registry.sync(
                TENANT,
                pb.SyncWorkspaceRequest(workspace_id="ws", files=[_file("geo.py", SHAPES)]),
            )
        assert raised.value.full
        assert _storage_errors("sync") == sync_errors + 1
        assert workspace.paths() == ["billing.py"]
        answer = await registry.sync(
            TENANT,
            pb.SyncWorkspaceRequest(
                workspace_id="ws", manifest=[pb.FileDigest(path="geo.py", sha256=_sha(SHAPES))]
            ),
        )
        assert list(answer.needed_paths) == ["geo.py"]  # asked for again

        # Room for the file, none for the index: the last index stays on disk, whole.
        disk.failing = "index.quill"
        save_errors = _storage_errors("index_save")
        await registry.sync(
            TENANT, pb.SyncWorkspaceRequest(workspace_id="ws", files=[_file("geo.py", SHAPES)])
        )
        await workspace.wait_indexed()
        status = workspace.status()
        assert "retrieval index" in status.storage_error and "full" in status.storage_error
        assert _storage_errors("index_save") >= save_errors + 1
        assert saved.read_bytes() == before
        assert not [p for p in saved.parent.iterdir() if p.name != "index.quill"]  # no leftovers
        hits = await asyncio.to_thread(workspace.search, "circle area radius", 1)
        assert hits[0].path == "geo.py"  # searchable from memory meanwhile

        # Room again: the next attempt saves it, and the error clears.
        disk.failing = None
        for _ in range(100):
            if saved.read_bytes() != before and not workspace.status().storage_error:
                break
            await asyncio.sleep(0.05)
        assert workspace.status().storage_error == ""
        await registry.close()
        reloaded = WorkspaceRegistry(tmp_path, lambda: embedder).get(WorkspaceKey(TENANT, "ws"))
        assert reloaded is not None
        await reloaded.wait_indexed()
        assert reloaded.status().files_indexed == 2

    asyncio.run(run())


def test_a_small_workspace_is_indexed_between_the_batches_of_a_large_one(
    embedder: Embedder, tmp_path: Path
) -> None:
    """Workspaces take turns batch by batch: one tenant's large repository does not hold back
    another's small one until it is done."""

    async def run() -> None:
        registry = WorkspaceRegistry(tmp_path, lambda: embedder)
        large = {
            f"pkg/module_{n}.py": f"def function_{n}(x):\n    return x + {n}\n" for n in range(80)
        }
        await _sync_all(registry, "large", large)
        await _sync_all(registry, "small", {"billing.py": BILLING})
        small = registry.get(WorkspaceKey(TENANT, "small"))
        big = registry.get(WorkspaceKey(TENANT, "large"))
        assert small is not None and big is not None
        await small.wait_indexed()
        assert small.status().files_indexed == 1
        assert big.status().files_pending > 0  # still going: the small one did not wait for it
        await big.wait_indexed()
        assert big.status().files_indexed == len(large)
        await registry.close()

    asyncio.run(run())
