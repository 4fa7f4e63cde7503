"""Keeps serving's copy of the workspace in step with the editor's, for retrieval and API search.

On `initialized` the workspace root is walked (quill/workspace_files.py: .gitignore, size limit,
no binary files, nothing outside the root), every file is hashed, and serving gets the complete
manifest; it answers which contents it lacks, and only those travel, in bounded batches. The
editor sees `$/progress` begin/report/end with file counts. Then the packages the workspace
imports (lsp_server/api_extraction.py, when present) go the same way by digest.

Afterwards a saved document is sent at once and an edited one after a pause (debounced per
document), from the editor's buffer. When serving is unreachable the initial sync retries with
backoff; nothing here ever blocks a completion.

Every answer names the serving process that gave it (`serving_instance`). When another one
answers (behind a load balancer the workspace's replica died and another took over, or serving
restarted), the whole sync runs again by content hash, so only what that process lacks travels.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from lsprotocol import types

from lsp_server.progress import WorkDoneProgress
from lsp_server.server import QuillLanguageServer
from lsp_server.workspace_identity import path_of, root_path
from quill.digest import content_digest
from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

# One SyncWorkspace request carries at most this many files or bytes of content.
BATCH_FILES = 64
BATCH_BYTES = 4_000_000
# An edited document is sent after this long without further edits.
CHANGE_DEBOUNCE_S = 2.0
_RPC_TIMEOUT_S = 60.0
_RETRY_START_S = 2.0
_RETRY_MAX_S = 60.0


@dataclass(frozen=True)
class _File:
    path: str
    sha256: str
    text: str


def scan(root: Path, max_file_bytes: int) -> tuple[list[_File], int]:
    """The workspace's text files with digests, and how many were skipped (blocking)."""
    from quill.workspace_files import walk_workspace

    skipped = 0

    def on_skip(path: str, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        logger.info("not synced (%s): %s", reason, path)

    files = [
        _File(f.path, content_digest(f.text), f.text)
        for f in walk_workspace(root, max_file_bytes, on_skip)
    ]
    return files, skipped


def batches(files: list[_File]) -> list[list[_File]]:
    """Consecutive groups within BATCH_FILES files and BATCH_BYTES of content."""
    groups: list[list[_File]] = []
    current: list[_File] = []
    size = 0
    for file in files:
        length = len(file.text.encode("utf-8", "surrogatepass"))
        if current and (len(current) >= BATCH_FILES or size + length > BATCH_BYTES):
            groups.append(current)
            current, size = [], 0
        current.append(file)
        size += length
    if current:
        groups.append(current)
    return groups


class WorkspaceSync:
    def __init__(self, server: QuillLanguageServer) -> None:
        self._server = server
        self._initial: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The index status of serving's last answer, for `quill.stats` and tests.
        self.last_status: pb.IndexStatus | None = None
        self.files_sent = 0
        # The serving process the last whole sync went to, and how often it ran again because
        # another one answered.
        self.synced_instance: str | None = None
        self.resyncs = 0

    # ---- lifecycle ----

    def start(self) -> None:
        listeners = self._server.serving_client().instance_listeners
        if self._serving_changed not in listeners:
            listeners.append(self._serving_changed)
        if self._initial is None or self._initial.done():
            self._initial = asyncio.create_task(self._initial_sync_with_retries())

    def _serving_changed(self, instance: str) -> None:
        """Another serving process answers: it may not hold the workspace; sync it again (a
        sync in progress checks at its end whom it went to; before a first whole sync there is
        nothing to sync again)."""
        if self.synced_instance is None or instance == self.synced_instance:
            return
        if self._initial is not None and not self._initial.done():
            return
        logger.info("another serving process answers; syncing the workspace again")
        self.resyncs += 1
        self._initial = asyncio.create_task(self._initial_sync_with_retries())

    async def close(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        for task in [self._initial, *self._tasks]:
            if task is not None:
                task.cancel()

    async def _initial_sync_with_retries(self) -> None:
        delay = _RETRY_START_S
        while True:
            try:
                synced = await self.sync_all()
                current = self._server.serving_client().serving_instance
                if synced is None or current in (None, synced):
                    return
                # Another process answered meanwhile: it may lack what was sent.
                logger.info("serving changed during the sync; syncing again")
            except grpc.aio.AioRpcError as error:
                logger.info(
                    "workspace sync failed (%s); retrying in %.0f s", error.code().name, delay
                )
            except Exception:  # noqa: BLE001 - sync is best effort, never fatal to the server
                logger.exception("workspace sync failed")
                return
            finally:
                self._server.state.workspace_synced.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    # ---- the initial (and any full) sync ----

    async def sync_all(self) -> str | None:
        """Sync files and packages; returns the serving process it went to (None: nothing to
        sync)."""
        ls = self._server
        root = root_path(ls.workspace.root_uri)
        if root is None:
            return None
        wid = ls.workspace_id()
        instance: str | None = None
        if ls.settings.retrieval:
            progress = WorkDoneProgress(ls, "Quill: syncing workspace", "quill-sync")
            await progress.begin()
            try:
                instance = await self._sync_files(root, wid, progress)
            finally:
                progress.end(self._summary())
        instance = await self._sync_packages(root, wid) or instance
        if instance:
            self.synced_instance = instance
        return instance or None

    async def _sync_files(self, root: Path, wid: str, progress: WorkDoneProgress) -> str:
        """Returns the serving process that answered the manifest."""
        ls = self._server
        files, skipped = await asyncio.to_thread(scan, root, ls.settings.max_file_bytes)
        progress.report(f"{len(files)} files found", 0)
        answer = await self._call(
            pb.SyncWorkspaceRequest(
                workspace_id=wid,
                manifest=[pb.FileDigest(path=f.path, sha256=f.sha256) for f in files],
                manifest_complete=True,
            )
        )
        needed = set(answer.needed_paths)
        to_send = [f for f in files if f.path in needed]
        sent = 0
        for group in batches(to_send):
            await self._call(
                pb.SyncWorkspaceRequest(
                    workspace_id=wid,
                    files=[
                        pb.WorkspaceFile(path=f.path, sha256=f.sha256, content=f.text)
                        for f in group
                    ],
                )
            )
            sent += len(group)
            self.files_sent += len(group)
            progress.report(
                f"{sent}/{len(to_send)} files sent", int(100 * sent / max(1, len(to_send)))
            )
        logger.info(
            "workspace synced: %d files, %d sent, %d skipped", len(files), len(to_send), skipped
        )
        return answer.serving_instance

    async def _sync_packages(self, root: Path, wid: str) -> str | None:
        """Returns the serving process that answered the package manifest, if one was sent."""
        try:
            from lsp_server.api_extraction import package_catalog
        except ImportError:
            return None
        try:
            packages = await package_catalog(
                root, getattr(self._server.settings, "python_path", "") or None
            )
        except Exception:  # noqa: BLE001 - another feature's extraction must not stop the sync
            logger.exception("API package extraction failed")
            return None
        if not packages:
            return None
        answer = await self._call(
            pb.SyncWorkspaceRequest(
                workspace_id=wid,
                package_manifest=[pb.FileDigest(path=p.name, sha256=p.digest) for p in packages],
            )
        )
        needed = set(answer.needed_packages)
        wanted = [p for p in packages if p.name in needed]
        for start in range(0, len(wanted), 8):
            await self._call(
                pb.SyncWorkspaceRequest(workspace_id=wid, packages=wanted[start : start + 8])
            )
        return answer.serving_instance

    # ---- documents ----

    def document_changed(self, uri: str, delay_s: float = CHANGE_DEBOUNCE_S) -> None:
        """Send the document after `delay_s` without further changes (0: now)."""
        if not self._server.settings.retrieval:
            return
        handle = self._pending.pop(uri, None)
        if handle is not None:
            handle.cancel()
        loop = asyncio.get_running_loop()
        self._pending[uri] = loop.call_later(delay_s, self._spawn_document_sync, uri)

    def _spawn_document_sync(self, uri: str) -> None:
        self._pending.pop(uri, None)
        task = asyncio.create_task(self._sync_document(uri))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_document(self, uri: str) -> None:
        ls = self._server
        root = root_path(ls.workspace.root_uri)
        document = ls.workspace.text_documents.get(uri)
        path = path_of(uri)
        if root is None or document is None or path is None:
            return
        if not path.is_relative_to(root):
            return  # a file outside the workspace is not part of its index
        text = document.source
        if (
            "\x00" in text
            or len(text.encode("utf-8", "surrogatepass")) > ls.settings.max_file_bytes
        ):
            logger.info("not synced (binary or too large): %s", uri)
            return
        try:
            await self._call(
                pb.SyncWorkspaceRequest(
                    workspace_id=ls.workspace_id(),
                    files=[
                        pb.WorkspaceFile(
                            path=ls.relative_path(uri), sha256=content_digest(text), content=text
                        )
                    ],
                )
            )
            self.files_sent += 1
        except grpc.aio.AioRpcError as error:
            logger.info("document sync failed: %s", error.code().name)

    async def _call(self, request: pb.SyncWorkspaceRequest) -> pb.SyncWorkspaceResponse:
        stub = self._server.serving_client().stub
        answer: pb.SyncWorkspaceResponse = await stub.SyncWorkspace(
            request,
            timeout=_RPC_TIMEOUT_S,
            metadata=routing_metadata(request.workspace_id),
        )
        for path, reason in answer.rejected.items():
            logger.info("serving refused %s: %s", path, reason)
        if answer.status.storage_error:
            logger.warning("serving: %s", answer.status.storage_error)
        self.last_status = answer.status
        self._server.serving_client().observe_instance(answer.serving_instance)
        return answer

    def _summary(self) -> str:
        status = self.last_status
        if status is None:
            return "not synced"
        return f"{status.files_indexed} files indexed, {status.files_pending} pending"


def register(server: QuillLanguageServer) -> None:
    sync = WorkspaceSync(server)
    server.initialized_hooks.append(sync.start)  # in the background; retries while away
    server.shutdown_hooks.append(sync.close)
    server.document_listeners.append(sync.document_changed)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def on_save(ls: QuillLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        sync.document_changed(params.text_document.uri, delay_s=0.0)
