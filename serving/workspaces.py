"""Per-workspace state in serving: the files the editor synced, their retrieval index and the
third-party API packages, each workspace isolated in its own directory under `data_dir`.

`SyncWorkspace` (see the proto) is answered from the event loop: received files are validated
and stored, and the response says which contents are still needed. Indexing (chunk + embed +
FAISS) runs afterwards in a worker thread, one workspace at a time, so completions never wait
for it; every response carries the index status for progress.

Every workspace belongs to a tenant (serving/auth.py): it is keyed by (tenant, the client's
workspace id), so two tenants' ids never meet, and an id alone reaches nothing.

On disk, per workspace (`data_dir/tenants/<sha256 of the tenant>/<sha256 of the id>/`):
- `files.json`: path -> content digest, written atomically after each sync;
- `blobs/<digest>`: file contents, written once each, atomically, deleted when no file has them;
- `packages/`: the ApiPackage messages, one file each (serving/package_store.py);
- `index/index.quill`: the retrieval index (retrieval/index.py), saved after indexing batches.
At start the index is compared with `files.json` and whatever differs is indexed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from quill.digest import content_digest
from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.errors import StorageError
from serving.package_store import PackageInfo, PackageStore, info_of

logger = logging.getLogger(__name__)

MAX_WORKSPACE_ID_CHARS = 512
# Files embedded per batch: large enough to amortise the model call, small enough that a save
# (and a search taking the index lock) comes often.
_INDEX_BATCH_FILES = 16
# Save the index at most this often while a long indexing run goes on (and at its end).
_SAVE_INTERVAL_S = 2.0
# After a failed save (a full disk, say), the next attempt comes this much later.
_SAVE_RETRY_S = 10.0
# Errors that mean the data folder has no room left, rather than a broken disk.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class WorkspaceKey:
    """A workspace's identity in serving: whose it is and the client's id for it."""

    tenant: str
    workspace_id: str


@dataclass(frozen=True)
class WorkspaceChange:
    changed_paths: tuple[str, ...]
    deleted_paths: tuple[str, ...]
    changed_packages: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed_paths or self.deleted_paths or self.changed_packages)


Listener = Callable[[WorkspaceChange], Any]


@dataclass
class _FilesDiff:
    """What one sync changes in a workspace's files, and which contents it still needs."""

    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    blobs: dict[str, str] = field(default_factory=dict)  # digest -> content, to write
    needed: list[str] = field(default_factory=list)


@dataclass
class _PackagesDiff:
    changed: list[str] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)


class WorkspaceHost(Protocol):
    """What a workspace uses of its registry (serving/workspace_registry.py)."""

    max_file_bytes: int
    max_files: int
    hnsw_threshold: int
    indexing_slot: asyncio.Semaphore

    @property
    def embedder(self) -> Any: ...

    @property
    def query_embedder(self) -> Any: ...


def check_relative_path(path: str) -> str | None:
    """Why `path` is not an acceptable workspace-relative path, or None if it is."""
    if not path or len(path) > 4096:
        return "invalid path"
    if "\x00" in path or "\\" in path:
        return "invalid path"
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or path != pure.as_posix():
        return "path escapes the workspace"
    return None


class Workspace:
    """One workspace's files, packages and index. Created by WorkspaceRegistry."""

    def __init__(self, key: WorkspaceKey, directory: Path, registry: WorkspaceHost) -> None:
        self.key = key
        self.directory = directory
        self._registry = registry
        self._files: dict[str, str] = {}  # path -> digest
        self._blob_sizes: dict[str, int] = {}  # digest -> bytes
        # Packages in memory are stubs (name, version, digest); entries are read from
        # `_package_store` when the API catalog asks for them.
        self._packages: dict[str, pb.ApiPackage] = {}
        self._package_info: dict[str, PackageInfo] = {}
        self._package_store = PackageStore(directory)
        # Calls using the workspace now (the registry never unloads it meanwhile).
        self.leases = 0
        self._skipped = 0
        # Why the last write to disk failed; "" once one succeeds again.
        self._storage_error = ""
        # One sync at a time: a sync that cannot be stored is undone whole.
        self._sync_lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._pending: set[str] = set()
        self._index: Any = None  # retrieval.WorkspaceIndex once loaded
        self._index_lock = threading.Lock()
        self._wakeup = asyncio.Event()
        self._indexing_done = asyncio.Event()
        self._indexing_done.set()
        self._task: asyncio.Task[None] | None = None
        self._load_state()

    # ---- what other features read ----

    def paths(self) -> list[str]:
        return sorted(self._files)

    def file_text(self, path: str) -> str | None:
        digest = self._files.get(path)
        if digest is None:
            return None
        try:
            return (self.directory / "blobs" / digest).read_text("utf-8", "surrogatepass")
        except OSError as error:
            logger.warning("workspace file %s unreadable: %s", path, error)
            return None

    def packages(self) -> dict[str, pb.ApiPackage]:
        """The packages with their entries, read from disk (blocking)."""
        found = {name: self._package_store.read(name) for name in list(self._packages)}
        return {name: package for name, package in found.items() if package is not None}

    def file_sizes(self) -> dict[str, int]:
        """path -> bytes of every file held."""
        return {path: self._blob_sizes.get(digest, 0) for path, digest in self._files.items()}

    def digests(self) -> set[str]:
        """The content digests of the files held."""
        return set(self._files.values())

    def package_names(self) -> set[str]:
        return set(self._packages)

    def add_listener(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def search(
        self,
        query: str,
        k: int,
        exclude_path: str | None = None,
        exclude_lines: tuple[int, int] | None = None,
    ) -> list[Any]:
        """retrieval.Hit list, best first; [] while the index is not loaded yet.

        Blocking (embeds the query): call it from a worker thread.
        """
        index = self._index
        if index is None:
            return []
        return list(index.search(query, k, exclude_path=exclude_path, exclude_lines=exclude_lines))

    def status(self) -> pb.IndexStatus:
        index = self._index
        indexed = len(index.paths()) if index is not None else 0
        return pb.IndexStatus(
            files_indexed=indexed,
            files_pending=len(self._pending),
            chunks=index.chunk_count if index is not None else 0,
            files_skipped=self._skipped,
            api_entries=sum(info.entries for info in self._package_info.values()),
            storage_error=self._storage_error,
        )

    async def wait_indexed(self) -> None:
        """Until everything received so far is searchable (tests, benchmarks, `quill index`)."""
        while self._pending or not self._indexing_done.is_set():
            await self._indexing_done.wait()
            await asyncio.sleep(0)

    # ---- sync ----

    async def apply(self, request: pb.SyncWorkspaceRequest) -> pb.SyncWorkspaceResponse:
        async with self._sync_lock:
            held = dict(self._files), dict(self._packages), dict(self._package_info)
            try:
                return await self._apply(request)
            except StorageError:
                # Nothing of this sync was stored, so none of it counts: the client sends it
                # again, and the manifest asks for what is missing.
                self._files, self._packages, self._package_info = held
                raise

    async def _apply(self, request: pb.SyncWorkspaceRequest) -> pb.SyncWorkspaceResponse:
        rejected: dict[str, str] = {}
        files = self._diff_files(request, rejected)
        packages = self._diff_packages(request)
        self._skipped += len(rejected)
        change = WorkspaceChange(
            tuple(files.changed), tuple(files.deleted), tuple(packages.changed)
        )
        if change:
            await self._store(files.blobs, list(change.changed_packages))
            self._schedule_indexing(change)
            await self._notify(change)
        return pb.SyncWorkspaceResponse(
            needed_paths=files.needed,
            needed_packages=packages.needed,
            status=self.status(),
            rejected=rejected,
        )

    def _rejection(self, file: pb.WorkspaceFile, digest: str) -> str | None:
        """Why a received file is refused, or None to take it."""
        reason = check_relative_path(file.path)
        if reason is not None:
            return reason
        if "\x00" in file.content:
            return "binary"
        if len(file.content.encode("utf-8", "surrogatepass")) > self._registry.max_file_bytes:
            return "too large"
        if file.sha256 and file.sha256.lower() != digest:
            return "digest mismatch"
        if file.path not in self._files and len(self._files) >= self._registry.max_files:
            return "too many files in the workspace"
        return None

    def _diff_files(self, request: pb.SyncWorkspaceRequest, rejected: dict[str, str]) -> _FilesDiff:
        """Take the received files and deletions; compare the manifest with what is held."""
        diff = _FilesDiff()
        sent: set[str] = set()
        for file in request.files:
            sent.add(file.path)
            digest = content_digest(file.content)
            reason = self._rejection(file, digest)
            if reason is not None:
                rejected[file.path] = reason
                logger.info("workspace file rejected (%s): %s", reason, file.path[:200])
                continue
            if self._files.get(file.path) != digest:
                self._files[file.path] = digest
                diff.blobs[digest] = file.content
                diff.changed.append(file.path)
        for path in request.deleted_paths:
            if self._files.pop(path, None) is not None:
                diff.deleted.append(path)
        if request.manifest or request.manifest_complete:
            listed: set[str] = set()
            for entry in request.manifest:
                reason = check_relative_path(entry.path)
                if reason is not None:
                    rejected[entry.path] = reason
                    continue
                listed.add(entry.path)
                if entry.path not in sent and self._files.get(entry.path) != entry.sha256.lower():
                    diff.needed.append(entry.path)
            if request.manifest_complete:
                for path in [p for p in self._files if p not in listed and p not in sent]:
                    del self._files[path]
                    diff.deleted.append(path)
        return diff

    def _diff_packages(self, request: pb.SyncWorkspaceRequest) -> _PackagesDiff:
        """Take the received packages; compare the package manifest with what is held."""
        diff = _PackagesDiff()
        diff.changed = [p.name for p in request.packages if p.name]
        for package in request.packages:
            if package.name:
                self._packages[package.name] = package
        diff.needed = [
            entry.path
            for entry in request.package_manifest
            if entry.path not in self._packages or self._packages[entry.path].digest != entry.sha256
        ]
        if request.package_manifest and request.manifest_complete:
            listed_packages = {entry.path for entry in request.package_manifest}
            for name in [n for n in self._packages if n not in listed_packages]:
                del self._packages[name]
                diff.changed.append(name)
        return diff

    def _schedule_indexing(self, change: WorkspaceChange) -> None:
        if change.changed_paths or change.deleted_paths:
            self._pending.update(change.changed_paths)
            self._pending.update(change.deleted_paths)
            self._indexing_done.clear()
            self._wakeup.set()
            self._ensure_indexer()

    async def _notify(self, change: WorkspaceChange) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(change)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001 - a listener must not fail the sync
                logger.exception("workspace listener failed")

    # ---- persistence of files and packages ----

    async def _store(self, blobs: dict[str, str], changed_packages: list[str]) -> None:
        """Write a sync's files and packages (in a thread); StorageError when it cannot."""
        try:
            await asyncio.to_thread(self._persist, blobs, changed_packages)
        except OSError as error:
            message = self._storage_failed("sync", error)
            raise StorageError(
                f"{message}; nothing of this sync was stored", full=error.errno in _NO_SPACE
            ) from error
        self._storage_error = ""

    def _storage_failed(self, operation: str, error: OSError) -> str:
        """Count and log a failed write to the data folder; returns the message."""
        full = error.errno in _NO_SPACE
        metrics.STORAGE_ERRORS.labels(operation, "no_space" if full else "other").inc()
        what = "files" if operation == "sync" else "retrieval index"
        why = "its data folder is full" if full else "a disk error"
        self._storage_error = (
            f"serving could not store this workspace's {what} ({why}: {error.strerror or error})"
        )
        logger.warning("workspace %s: %s", self.directory.name, self._storage_error)
        return self._storage_error

    def _persist(self, blobs: dict[str, str], changed_packages: list[str]) -> None:
        from retrieval.persistence import atomic_write

        for digest, text in blobs.items():
            target = self.directory / "blobs" / digest
            data = text.encode("utf-8", "surrogatepass")
            if not target.exists():
                atomic_write(target, data)
            self._blob_sizes[digest] = len(data)
        atomic_write(
            self.directory / "files.json",
            json.dumps({"files": self._files}, sort_keys=True).encode("utf-8"),
        )
        self._persist_packages(changed_packages)

    def _persist_packages(self, names: list[str]) -> None:
        """Write (or delete) only the packages that changed, then keep stubs of them."""
        gone = [name for name in names if name not in self._packages]
        self._package_store.delete(gone)
        for name in gone:
            self._package_info.pop(name, None)
        written = [self._packages[name] for name in set(names) - set(gone)]
        self._package_store.write(written)
        for package in written:
            self._package_info[package.name] = info_of(package)
            self._packages[package.name] = pb.ApiPackage(
                name=package.name, version=package.version, digest=package.digest
            )

    def collect_garbage(self, digests_before: Iterable[str]) -> None:
        """Delete the blobs of `digests_before` no file holds any more (blocking)."""
        held = set(self._files.values())
        for digest in set(digests_before) - held:
            (self.directory / "blobs" / digest).unlink(missing_ok=True)
            self._blob_sizes.pop(digest, None)

    def _load_state(self) -> None:
        manifest = self.directory / "files.json"
        try:
            if manifest.exists():
                files = json.loads(manifest.read_text("utf-8"))["files"]
                self._files = {str(k): str(v) for k, v in files.items()}
        except (OSError, ValueError, KeyError, AttributeError) as error:
            logger.warning("ignoring damaged workspace manifest %s: %s", manifest, error)
        for digest in set(self._files.values()):
            try:
                self._blob_sizes[digest] = (self.directory / "blobs" / digest).stat().st_size
            except OSError:
                self._blob_sizes[digest] = 0
        self._package_info = self._package_store.load()
        self._packages = {
            name: pb.ApiPackage(name=name, version=info.version, digest=info.digest)
            for name, info in self._package_info.items()
        }
        # Whatever the saved index lacks is found by the indexer once the index is loaded.
        self._pending.update(self._files)

    # ---- background indexing ----

    def start(self) -> None:
        """Begin loading the saved index and indexing what it lacks (needs a running loop)."""
        self._indexing_done.clear()
        self._ensure_indexer()

    def _ensure_indexer(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run_indexer(), name=f"indexer:{self.directory.name}"
            )

    async def _run_indexer(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                if self._index is None:
                    async with self._registry.indexing_slot:
                        await asyncio.to_thread(self._load_index)
                await self._index_pending()
                if not self._pending:
                    self._indexing_done.set()
                    await self._wait_for_work()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("indexing of a workspace failed")
            self._indexing_done.set()

    async def _wait_for_work(self) -> None:
        index = self._index
        if index is None or not index.dirty:
            await self._wakeup.wait()
            return
        # Its last save failed: try again later, or sooner when more work comes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), _SAVE_RETRY_S)

    async def _save_index(self, index: Any) -> bool:
        """Save the index; on a failed write the last index saved whole stays on disk, and
        this one stays in memory (still searchable) and dirty, to be saved again later."""
        try:
            await asyncio.to_thread(index.save)
        except OSError as error:
            self._storage_failed("index_save", error)
            return False
        self._storage_error = ""
        return True

    def _load_index(self) -> None:
        from retrieval.index import WorkspaceIndex

        embedder = self._registry.embedder
        # Load the query model now, so the first completion does not wait for it.
        self._registry.query_embedder  # noqa: B018
        index = WorkspaceIndex.load(
            embedder, self.directory / "index", hnsw_threshold=self._registry.hnsw_threshold
        )
        for path in index.paths():
            if path not in self._files:
                index.remove_file(path)
        self._index = index
        logger.info(
            "workspace index loaded: %d files, %d chunks", len(index.paths()), index.chunk_count
        )

    async def _index_pending(self) -> None:
        index = self._index
        last_save = time.monotonic()
        while self._pending:
            batch: list[tuple[str, str, str]] = []
            for path in sorted(self._pending)[:_INDEX_BATCH_FILES]:
                self._pending.discard(path)
                digest = self._files.get(path)
                if digest is None:
                    await asyncio.to_thread(index.remove_file, path)
                    continue
                if index.file_digest(path) == digest:
                    continue
                text = await asyncio.to_thread(self.file_text, path)
                if text is not None:
                    batch.append((path, text, digest))
            if batch:
                # The slot is held per batch, not per run: a workspace with thousands of files
                # takes turns with the others (the semaphore wakes waiters in order), so a small
                # workspace synced meanwhile is searchable after one batch, not after the lot.
                async with self._registry.indexing_slot:
                    await asyncio.to_thread(index.update_files, batch)
            if index.dirty and time.monotonic() - last_save > _SAVE_INTERVAL_S:
                await self._save_index(index)
                last_save = time.monotonic()
        if index.dirty:
            await self._save_index(index)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        index = self._index
        if index is not None and index.dirty:
            await self._save_index(index)
