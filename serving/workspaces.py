"""Per-workspace state in serving: the files the editor synced, their retrieval index and the
third-party API packages, each workspace isolated in its own directory under `data_dir`.

`SyncWorkspace` (see the proto) is answered from the event loop: received files are validated
and stored, and the response says which contents are still needed. Indexing (chunk + embed +
FAISS) runs afterwards in a worker thread, one workspace at a time, so completions never wait
for it; every response carries the index status for progress.

On disk, per workspace (`data_dir/workspaces/<sha256 of the id>/`):
- `files.json`: path -> content digest, written atomically after each sync;
- `blobs/<digest>`: file contents, written once each, atomically;
- `packages.bin`: the ApiPackage messages, length-prefixed, written atomically;
- `index/index.quill`: the retrieval index (retrieval/index.py), saved after indexing batches.
At start the index is compared with `files.json` and whatever differs is indexed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from quill import envs
from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.config import RetrievalConfig
from serving.errors import InvalidRequestError, StorageError

logger = logging.getLogger(__name__)

MAX_WORKSPACE_ID_CHARS = 512
DEFAULT_MAX_FILE_BYTES = 1_000_000
DEFAULT_MAX_FILES = 50_000
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
class WorkspaceChange:
    changed_paths: tuple[str, ...]
    deleted_paths: tuple[str, ...]
    changed_packages: tuple[str, ...]


Listener = Callable[[WorkspaceChange], Any]


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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Workspace:
    """One workspace's files, packages and index. Created by WorkspaceRegistry."""

    def __init__(self, workspace_id: str, directory: Path, registry: WorkspaceRegistry) -> None:
        self.workspace_id = workspace_id
        self.directory = directory
        self._registry = registry
        self._files: dict[str, str] = {}  # path -> digest
        self._packages: dict[str, pb.ApiPackage] = {}
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
        return dict(self._packages)

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
            api_entries=sum(len(p.entries) for p in self._packages.values()),
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
            files, packages = dict(self._files), dict(self._packages)
            try:
                return await self._apply(request)
            except StorageError:
                # Nothing of this sync was stored, so none of it counts: the client sends it
                # again, and the manifest asks for what is missing.
                self._files, self._packages = files, packages
                raise

    async def _apply(self, request: pb.SyncWorkspaceRequest) -> pb.SyncWorkspaceResponse:
        limits = self._registry
        rejected: dict[str, str] = {}
        changed: list[str] = []
        deleted: list[str] = []
        sent: set[str] = set()
        blobs: dict[str, str] = {}
        for file in request.files:
            sent.add(file.path)
            reason = check_relative_path(file.path)
            if reason is None and "\x00" in file.content:
                reason = "binary"
            if (
                reason is None
                and len(file.content.encode("utf-8", "surrogatepass")) > limits.max_file_bytes
            ):
                reason = "too large"
            digest = _digest(file.content)
            if reason is None and file.sha256 and file.sha256.lower() != digest:
                reason = "digest mismatch"
            if (
                reason is None
                and file.path not in self._files
                and len(self._files) >= limits.max_files
            ):
                reason = "too many files in the workspace"
            if reason is not None:
                rejected[file.path] = reason
                logger.info("workspace file rejected (%s): %s", reason, file.path[:200])
                continue
            if self._files.get(file.path) != digest:
                self._files[file.path] = digest
                blobs[digest] = file.content
                changed.append(file.path)
        for path in request.deleted_paths:
            if self._files.pop(path, None) is not None:
                deleted.append(path)
        needed: list[str] = []
        if request.manifest or request.manifest_complete:
            listed: set[str] = set()
            for entry in request.manifest:
                reason = check_relative_path(entry.path)
                if reason is not None:
                    rejected[entry.path] = reason
                    continue
                listed.add(entry.path)
                if entry.path not in sent and self._files.get(entry.path) != entry.sha256.lower():
                    needed.append(entry.path)
            if request.manifest_complete:
                for path in [p for p in self._files if p not in listed and p not in sent]:
                    del self._files[path]
                    deleted.append(path)
        self._skipped += len(rejected)
        changed_packages = [p.name for p in request.packages if p.name]
        for package in request.packages:
            if package.name:
                self._packages[package.name] = package
        needed_packages = [
            entry.path
            for entry in request.package_manifest
            if entry.path not in self._packages or self._packages[entry.path].digest != entry.sha256
        ]
        if request.package_manifest and request.manifest_complete:
            listed_packages = {entry.path for entry in request.package_manifest}
            for name in [n for n in self._packages if n not in listed_packages]:
                del self._packages[name]
                changed_packages.append(name)
        if changed or deleted or changed_packages:
            try:
                await asyncio.to_thread(self._persist, blobs, bool(changed_packages))
            except OSError as error:
                message = self._storage_failed("sync", error)
                raise StorageError(
                    f"{message}; nothing of this sync was stored", full=error.errno in _NO_SPACE
                ) from error
            self._storage_error = ""
        if changed or deleted:
            self._pending.update(changed)
            self._pending.update(deleted)
            self._indexing_done.clear()
            self._wakeup.set()
            self._ensure_indexer()
        change = WorkspaceChange(tuple(changed), tuple(deleted), tuple(changed_packages))
        if changed or deleted or changed_packages:
            for listener in list(self._listeners):
                try:
                    result = listener(change)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:  # noqa: BLE001 - a listener must not fail the sync
                    logger.exception("workspace listener failed")
        return pb.SyncWorkspaceResponse(
            needed_paths=needed,
            needed_packages=needed_packages,
            status=self.status(),
            rejected=rejected,
        )

    # ---- persistence of files and packages ----

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

    def _persist(self, blobs: dict[str, str], packages_changed: bool) -> None:
        from retrieval.persistence import atomic_write

        for digest, text in blobs.items():
            target = self.directory / "blobs" / digest
            if not target.exists():
                atomic_write(target, text.encode("utf-8", "surrogatepass"))
        atomic_write(
            self.directory / "files.json",
            json.dumps({"files": self._files}, sort_keys=True).encode("utf-8"),
        )
        if packages_changed:
            data = b"".join(
                struct.pack("<I", len(raw)) + raw
                for raw in (p.SerializeToString() for p in self._packages.values())
            )
            atomic_write(self.directory / "packages.bin", data)

    def _load_state(self) -> None:
        manifest = self.directory / "files.json"
        try:
            if manifest.exists():
                files = json.loads(manifest.read_text("utf-8"))["files"]
                self._files = {str(k): str(v) for k, v in files.items()}
        except (OSError, ValueError, KeyError, AttributeError) as error:
            logger.warning("ignoring damaged workspace manifest %s: %s", manifest, error)
        packages = self.directory / "packages.bin"
        try:
            if packages.exists():
                data = packages.read_bytes()
                offset = 0
                while offset < len(data):
                    (length,) = struct.unpack_from("<I", data, offset)
                    package = pb.ApiPackage.FromString(data[offset + 4 : offset + 4 + length])
                    self._packages[package.name] = package
                    offset += 4 + length
        except (OSError, ValueError, struct.error) as error:
            logger.warning("ignoring damaged package store %s: %s", packages, error)
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
                async with self._registry.indexing_slot:
                    if self._index is None:
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


class WorkspaceRegistry:
    """All workspaces of this serving process, and the embedding model they share."""

    def __init__(
        self,
        data_dir: Path,
        embedder_factory: Callable[[], Any],
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
        hnsw_threshold: int | None = None,
    ) -> None:
        from retrieval.vector_index import DEFAULT_HNSW_THRESHOLD

        self.data_dir = data_dir
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.hnsw_threshold = hnsw_threshold or DEFAULT_HNSW_THRESHOLD
        self._embedder_factory = embedder_factory
        self._embedder: Any = None
        self._query_embedder: Any = None
        self._embedder_lock = threading.Lock()
        self._workspaces: dict[str, Workspace] = {}
        # One workspace indexes at a time: embedding uses every core already.
        self.indexing_slot = asyncio.Semaphore(1)

    @property
    def embedder(self) -> Any:
        """The shared embedding model, loaded on first use (blocking; call from a thread)."""
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = self._embedder_factory()
            return self._embedder

    @property
    def query_embedder(self) -> Any:
        """A second copy of the model for completion queries, so a query never waits behind an
        indexing batch holding the first one (blocking on first use; call from a thread)."""
        with self._embedder_lock:
            if self._query_embedder is None:
                self._query_embedder = self._embedder_factory()
            return self._query_embedder

    def directory_of(self, workspace_id: str) -> Path:
        # A digest, never the id itself: ids are client-chosen and must not name paths.
        name = hashlib.sha256(workspace_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.data_dir / "workspaces" / name

    def get(self, workspace_id: str) -> Workspace | None:
        workspace = self._workspaces.get(workspace_id)
        if workspace is None and workspace_id and self.directory_of(workspace_id).is_dir():
            workspace = self.get_or_create(workspace_id)  # persisted by an earlier process
        return workspace

    def get_or_create(self, workspace_id: str) -> Workspace:
        if not workspace_id or len(workspace_id) > MAX_WORKSPACE_ID_CHARS:
            raise InvalidRequestError(
                f"workspace_id must be 1 to {MAX_WORKSPACE_ID_CHARS} characters"
            )
        workspace = self._workspaces.get(workspace_id)
        if workspace is None:
            directory = self.directory_of(workspace_id)
            directory.mkdir(parents=True, exist_ok=True)
            workspace = Workspace(workspace_id, directory, self)
            self._workspaces[workspace_id] = workspace
            workspace.start()
        return workspace

    def workspaces(self) -> Sequence[Workspace]:
        return list(self._workspaces.values())

    async def sync(self, request: pb.SyncWorkspaceRequest) -> pb.SyncWorkspaceResponse:
        return await self.get_or_create(request.workspace_id).apply(request)

    async def close(self) -> None:
        for workspace in self.workspaces():
            await workspace.close()


def registry_from_config(config: RetrievalConfig) -> WorkspaceRegistry:
    """The registry `quill serve` uses: data under --data-dir (default <cache dir>/data)."""

    def load_embedder() -> Any:
        from retrieval.embedding import Embedder

        # One torch thread: next to a busy engine, two made a query embedding p50 3.1 s instead
        # of 0.37 s (measured under load); an indexing batch is only about 20% slower.
        return Embedder(config.embedding_model, threads=1)

    return WorkspaceRegistry(
        config.data_dir or envs.cache_dir() / "data",
        load_embedder,
        max_file_bytes=config.max_file_bytes,
    )
