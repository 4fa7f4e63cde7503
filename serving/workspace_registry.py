"""Every workspace of this serving process, keyed by (tenant, workspace id), within bounds.

- In memory: at most `resident_workspaces` (serving.config.LimitsConfig); the least recently
  used leaves first, and any unused for `workspace_idle_s` leaves too. Leaving saves its index
  and frees its files' map, index and API catalog; the next call that names it loads it again
  from disk (its files, packages and index are all there), so to the client nothing changed.
- On disk: at most `workspaces_per_tenant` per tenant. A new workspace past that replaces the
  tenant's least recently used one if that has been idle for `workspace_replace_idle_s` (its
  files are a copy of the client's, synced again by content hash whenever it comes back);
  otherwise the sync is refused with RESOURCE_EXHAUSTED.
- Per sync: files, bytes and API packages per workspace (serving/limits.py).

A workspace's directory's modification time is its last use, so the order survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from quill import envs
from quill.v1 import quill_pb2 as pb
from serving.config import LimitsConfig, RetrievalConfig
from serving.errors import InvalidRequestError, ResourceExhaustedError
from serving.limits import check_sync, flag
from serving.workspaces import MAX_WORKSPACE_ID_CHARS, Workspace, WorkspaceKey

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 1_000_000
# A used workspace's directory time is refreshed at most this often (a stat per call is cheap,
# a write per completion is not).
_TOUCH_INTERVAL_S = 60.0

UnloadListener = Callable[[WorkspaceKey], None]


class WorkspaceRegistry:
    """All workspaces of this serving process, and the embedding model they share."""

    def __init__(
        self,
        data_dir: Path,
        embedder_factory: Callable[[], Any],
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        limits: LimitsConfig | None = None,
        hnsw_threshold: int | None = None,
    ) -> None:
        from retrieval.vector_index import DEFAULT_HNSW_THRESHOLD

        self.data_dir = data_dir
        self.limits = limits or LimitsConfig()
        self.max_file_bytes = max_file_bytes
        self.max_files = self.limits.files_per_workspace
        self.hnsw_threshold = hnsw_threshold or DEFAULT_HNSW_THRESHOLD
        self._embedder_factory = embedder_factory
        self._embedder: Any = None
        self._query_embedder: Any = None
        self._embedder_lock = threading.Lock()
        # Resident workspaces, least recently used first.
        self._workspaces: OrderedDict[WorkspaceKey, Workspace] = OrderedDict()
        self._last_used: dict[WorkspaceKey, float] = {}
        self._touched: dict[WorkspaceKey, float] = {}
        self._unload_listeners: list[UnloadListener] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # One indexing batch at a time, whichever workspace it is for: embedding uses every
        # core already, and workspaces take turns batch by batch (serving/workspaces.py).
        self.indexing_slot = asyncio.Semaphore(1)
        if (data_dir / "workspaces").is_dir():
            logger.warning(
                "%s holds workspaces stored before tenants; they are no longer read (editors "
                "sync again) and the folder can be deleted",
                data_dir / "workspaces",
            )

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

    def add_unload_listener(self, callback: UnloadListener) -> None:
        """`callback(key)` when a workspace leaves memory (to drop what is built on it)."""
        self._unload_listeners.append(callback)

    # ---- where workspaces live ----

    def tenant_directory(self, tenant: str) -> Path:
        return self.data_dir / "tenants" / hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:32]

    def directory_of(self, key: WorkspaceKey) -> Path:
        # Digests, never the names: ids are client-chosen and must not name paths.
        name = hashlib.sha256(key.workspace_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.tenant_directory(key.tenant) / name

    # ---- finding and creating ----

    def get(self, key: WorkspaceKey) -> Workspace | None:
        """The tenant's workspace of that id if it was ever synced (loaded from disk if it is
        not in memory); None otherwise. Never creates one."""
        workspace = self._workspaces.get(key)
        if workspace is None:
            if not key.workspace_id or not self.directory_of(key).is_dir():
                return None
            workspace = self._load(key)
        self._touch(key)
        return workspace

    def resident(self, key: WorkspaceKey) -> Workspace | None:
        """The workspace if it is in memory now (never loads it)."""
        return self._workspaces.get(key)

    def get_or_create(self, key: WorkspaceKey) -> Workspace:
        if not key.workspace_id or len(key.workspace_id) > MAX_WORKSPACE_ID_CHARS:
            raise InvalidRequestError(
                f"workspace_id must be 1 to {MAX_WORKSPACE_ID_CHARS} characters"
            )
        workspace = self.get(key)
        if workspace is None:
            self._make_room(key.tenant)
            self.directory_of(key).mkdir(parents=True, exist_ok=True)
            workspace = self._load(key)
            self._touch(key)
        return workspace

    def workspaces(self) -> Sequence[Workspace]:
        """The workspaces in memory now."""
        return list(self._workspaces.values())

    async def sync(self, tenant: str, request: pb.SyncWorkspaceRequest) -> pb.SyncWorkspaceResponse:
        workspace = self.get_or_create(WorkspaceKey(tenant, request.workspace_id))
        check_sync(
            request,
            workspace.file_sizes(),
            workspace.package_names(),
            self.limits,
            self.max_file_bytes,
        )
        digests_before = workspace.digests()
        workspace.leases += 1
        try:
            answer = await workspace.apply(request)
            await asyncio.to_thread(workspace.collect_garbage, digests_before)
        finally:
            workspace.leases -= 1
        return answer

    # ---- memory ----

    def _load(self, key: WorkspaceKey) -> Workspace:
        workspace = Workspace(key, self.directory_of(key), self)
        self._workspaces[key] = workspace
        workspace.start()
        self._ensure_sweeper()
        self._fit_in_memory()
        return workspace

    def _touch(self, key: WorkspaceKey) -> None:
        now = time.monotonic()
        self._workspaces.move_to_end(key)
        self._last_used[key] = now
        if now - self._touched.get(key, -_TOUCH_INTERVAL_S) >= _TOUCH_INTERVAL_S:
            self._touched[key] = now
            with contextlib.suppress(OSError):
                os.utime(self.directory_of(key))

    def _fit_in_memory(self) -> None:
        excess = len(self._workspaces) - self.limits.resident_workspaces
        for key in [k for k, w in self._workspaces.items() if not w.leases][: max(excess, 0)]:
            self.unload(key)

    def unload(self, key: WorkspaceKey) -> None:
        """Let the workspace leave memory (its index is saved in the background)."""
        workspace = self._workspaces.pop(key, None)
        self._last_used.pop(key, None)
        self._touched.pop(key, None)
        if workspace is None:
            return
        for listener in list(self._unload_listeners):
            listener(key)
        task = asyncio.get_running_loop().create_task(workspace.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        logger.debug("workspace left memory (%d resident)", len(self._workspaces))

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Unload workspaces idle for `workspace_idle_s`."""
        idle_s = self.limits.workspace_idle_s
        while self._workspaces:
            await asyncio.sleep(min(60.0, idle_s / 2))
            cutoff = time.monotonic() - idle_s
            for key in [k for k, used in self._last_used.items() if used <= cutoff]:
                if not self._workspaces[key].leases:
                    self.unload(key)

    # ---- disk ----

    def _make_room(self, tenant: str) -> None:
        """Room for one more workspace of `tenant`: replace its least recently used one if
        that is idle long enough, else refuse (RESOURCE_EXHAUSTED)."""
        cap = self.limits.workspaces_per_tenant
        folder = self.tenant_directory(tenant)
        stored = (
            [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
            if folder.is_dir()
            else []
        )
        if len(stored) < cap:
            return
        oldest = min(stored, key=lambda d: d.stat().st_mtime)
        idle_s = time.time() - oldest.stat().st_mtime
        resident = next((k for k in self._workspaces if self.directory_of(k) == oldest), None)
        busy = resident is not None and self._workspaces[resident].leases > 0
        if idle_s < self.limits.workspace_replace_idle_s or busy:
            raise ResourceExhaustedError(
                f"this tenant already keeps {len(stored)} workspaces on this server; the limit "
                f"is {cap} (quill serve {flag('workspaces_per_tenant')}); the least recently "
                f"used one can be replaced once it has been idle for "
                f"{self.limits.workspace_replace_idle_s:g} s "
                f"({flag('workspace_replace_idle_s')})"
            )
        if resident is not None:
            self.unload(resident)
        # Renamed at once (so it is gone for every later call), deleted in the background.
        doomed = oldest.with_name(f".deleted-{oldest.name}-{time.time_ns()}")
        oldest.rename(doomed)
        threading.Thread(target=shutil.rmtree, args=(doomed, True), daemon=True).start()
        logger.info("a workspace idle for %.0f s was replaced by a new one of its tenant", idle_s)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for workspace in self.workspaces():
            await workspace.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def registry_from_config(config: RetrievalConfig, limits: LimitsConfig) -> WorkspaceRegistry:
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
        limits=limits,
    )
