"""Keeps serving's copy of the workspace in step with the editor's, for retrieval and API search.

On `initialized` the workspace root is walked once (quill/workspace_files.py: .gitignore, size
limit, no binary files, nothing outside the root), up to `maxSyncFiles` files and
`maxSyncBytes` bytes (the user is told once when a cap stops it); only each file's digest and
size are kept. Serving gets the complete manifest; it answers which contents it lacks, and only
those are read again and travel, in bounded batches. The editor sees `$/progress`
begin/report/end with file counts. Then the packages the workspace imports
(lsp_server/api_extraction.py, when present) go the same way by digest.

Afterwards a saved document is sent at once and an edited one after a pause (debounced per
document), from the editor's buffer, within the same caps. When serving is unreachable the
initial sync waits until the serving client finds it back, then retries (with the language
server's one backoff policy, lsp_server/serving_client.py) from the manifest it already has:
the workspace is never walked again. Nothing here ever blocks a completion.

Every answer names the serving process that gave it (`serving_instance`). When another one
answers (behind a load balancer the workspace's replica died and another took over, or serving
restarted), the whole sync runs again by content hash, so only what that process lacks travels.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from lsprotocol import types

from lsp_server.progress import WorkDoneProgress
from lsp_server.server import QuillLanguageServer
from lsp_server.serving_client import backoff
from lsp_server.workspace_identity import path_of, root_path
from quill.digest import content_digest
from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb
from quill.workspace_files import read_text_file

if TYPE_CHECKING:
    from tenacity import RetryCallState

logger = logging.getLogger(__name__)

# One SyncWorkspace request carries at most this many files or bytes of content.
BATCH_FILES = 64
BATCH_BYTES = 4_000_000
# An edited document is sent after this long without further edits.
CHANGE_DEBOUNCE_S = 2.0
_RPC_TIMEOUT_S = 60.0
# Retries of the initial sync wait at most this long between them (serving being down is
# waited out separately, without retrying against it).
_RETRY_MAX_S = 30.0
# Whole syncs in a row while the serving process that answers keeps changing.
_MAX_SYNC_ROUNDS = 3


@dataclass(frozen=True)
class _File:
    path: str
    sha256: str
    size: int  # UTF-8 bytes


@dataclass
class SyncBudget:
    """The caps on what one workspace syncs: distinct files and their bytes."""

    max_files: int
    max_bytes: int
    sizes: dict[str, int] = field(default_factory=dict)
    total_bytes: int = 0
    # Set once a file was refused for the caps: what the user is told.
    exceeded: str | None = None

    def admit(self, path: str, size: int) -> bool:
        """Count the file in, or refuse it when it would pass a cap."""
        known = self.sizes.get(path)
        if known is None and len(self.sizes) >= self.max_files:
            self.exceeded = f"maxSyncFiles ({self.max_files} files)"
            return False
        total = self.total_bytes - (known or 0) + size
        if total > self.max_bytes:
            self.exceeded = f"maxSyncBytes ({self.max_bytes} bytes)"
            return False
        self.sizes[path] = size
        self.total_bytes = total
        return True


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def scan(root: Path, max_file_bytes: int, budget: SyncBudget) -> tuple[list[_File], int]:
    """The workspace's text files with digests and sizes (no contents kept), and how many were
    skipped; stops at the budget's caps (blocking)."""
    from quill.workspace_files import walk_workspace

    skipped = 0

    def on_skip(path: str, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        logger.info("not synced (%s): %s", reason, path)

    files = []
    for f in walk_workspace(root, max_file_bytes, on_skip):
        size = _utf8_size(f.text)
        if not budget.admit(f.path, size):
            break
        files.append(_File(f.path, content_digest(f.text), size))
    return files, skipped


def batches(files: list[_File]) -> list[list[_File]]:
    """Consecutive groups within BATCH_FILES files and BATCH_BYTES of content."""
    groups: list[list[_File]] = []
    current: list[_File] = []
    size = 0
    for file in files:
        if current and (len(current) >= BATCH_FILES or size + file.size > BATCH_BYTES):
            groups.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    if current:
        groups.append(current)
    return groups


def read_batch(root: Path, group: list[_File], max_file_bytes: int) -> list[pb.WorkspaceFile]:
    """The contents serving asked for, read again now (blocking); a file that became unusable
    since the scan is left out, one that changed goes with its new digest."""
    found = []
    root = root.resolve()
    for file in group:
        path = root / file.path
        if not path.resolve().is_relative_to(root):  # a symlink changed since the scan
            logger.info("not synced (symlink escapes the workspace root): %s", file.path)
            continue
        text, reason = read_text_file(path, max_file_bytes)
        if text is None:
            logger.info("not synced (%s): %s", reason, file.path)
            continue
        found.append(pb.WorkspaceFile(path=file.path, sha256=content_digest(text), content=text))
    return found


class WorkspaceSync:
    def __init__(self, server: QuillLanguageServer) -> None:
        self._server = server
        self._initial: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The initial scan, kept across retries: (files, how many were skipped).
        self._manifest: tuple[list[_File], int] | None = None
        self._budget: SyncBudget | None = None
        self._told_about_caps = False
        # Ends background extraction threads at shutdown, so the process can exit.
        self._stop = threading.Event()
        # The index status of serving's last answer, for `quill.stats` and tests.
        self.last_status: pb.IndexStatus | None = None
        self.files_sent = 0
        self.scans = 0
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
        # A new sync, not a retry: walk the workspace again (files changed meanwhile, saved to
        # the process that answered then, must reach this one too).
        self._manifest = None
        self._initial = asyncio.create_task(self._initial_sync_with_retries())

    async def close(self) -> None:
        self._stop.set()
        for handle in self._pending.values():
            handle.cancel()
        for task in [self._initial, *self._tasks]:
            if task is not None:
                task.cancel()

    async def _initial_sync_with_retries(self) -> None:
        from tenacity import AsyncRetrying, retry_if_exception

        def worth_retrying(error: BaseException) -> bool:
            # A cap of serving's (too many files, say) stays hit however often it is asked.
            return isinstance(error, grpc.aio.AioRpcError) and not _over_a_cap(error)

        try:
            async for attempt in AsyncRetrying(
                wait=backoff(_RETRY_MAX_S),
                retry=retry_if_exception(worth_retrying),
                before_sleep=_log_retry,
            ):
                with attempt:
                    try:
                        # While serving is down, wait for the serving client to find it back
                        # instead of retrying against a dead address.
                        await self._server.serving_client().wait_until_available()
                        await self._sync_until_settled()
                    finally:
                        self._server.state.workspace_synced.set()
        except grpc.aio.AioRpcError as error:  # only a cap ends the retries
            self._server.notify_user(
                f"Quill: serving did not take this workspace: {error.details()}", True
            )
        except Exception:  # noqa: BLE001 - sync is best effort, never fatal to the server
            logger.exception("workspace sync failed")

    # ---- the initial (and any full) sync ----

    async def _sync_until_settled(self) -> None:
        """A whole sync, again while another serving process answered meanwhile (it may lack
        what was sent); a few rounds at most, later changes are caught by the listener."""
        for _ in range(_MAX_SYNC_ROUNDS):
            synced = await self.sync_all()
            current = self._server.serving_client().serving_instance
            if synced is None or current in (None, synced):
                return
            logger.info("serving changed during the sync; syncing again")

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

    def _caps(self) -> SyncBudget:
        if self._budget is None:
            settings = self._server.settings
            self._budget = SyncBudget(settings.max_sync_files, settings.max_sync_bytes)
        return self._budget

    async def _scan_once(self, root: Path) -> tuple[list[_File], int]:
        if self._manifest is None:
            self.scans += 1
            budget = self._caps()
            max_file_bytes = self._server.settings.max_file_bytes
            self._manifest = await asyncio.to_thread(scan, root, max_file_bytes, budget)
            self._tell_about_caps()
        return self._manifest

    def _tell_about_caps(self) -> None:
        budget = self._caps()
        if budget.exceeded is None or self._told_about_caps:
            return
        self._told_about_caps = True
        message = (
            f"Quill: the workspace is larger than {budget.exceeded}; "
            f"{len(budget.sizes)} files ({budget.total_bytes} bytes) are synced for retrieval, "
            "the rest is left out. Raise the setting to include more."
        )
        logger.warning("%s", message)
        self._server.notify_user(message, True)

    async def _sync_files(self, root: Path, wid: str, progress: WorkDoneProgress) -> str:
        """Returns the serving process that answered the manifest."""
        ls = self._server
        files, skipped = await self._scan_once(root)
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
            contents = await asyncio.to_thread(read_batch, root, group, ls.settings.max_file_bytes)
            await self._call(pb.SyncWorkspaceRequest(workspace_id=wid, files=contents))
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
                root, getattr(self._server.settings, "python_path", "") or None, self._stop
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
        document = ls.open_document(uri)
        path = path_of(uri)
        if root is None or document is None or path is None:
            return
        if not path.is_relative_to(root):
            return  # a file outside the workspace is not part of its index
        text = document.source
        size = _utf8_size(text)
        if "\x00" in text or size > ls.settings.max_file_bytes:
            logger.info("not synced (binary or too large): %s", uri)
            return
        if not self._caps().admit(ls.relative_path(uri), size):
            logger.info("not synced (workspace caps): %s", uri)
            self._tell_about_caps()
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
        serving = self._server.serving_client()
        try:
            answer: pb.SyncWorkspaceResponse = await serving.stub.SyncWorkspace(
                request,
                timeout=_RPC_TIMEOUT_S,
                metadata=routing_metadata(request.workspace_id),
            )
        except grpc.aio.AioRpcError as error:
            serving.note_failure(error)  # serving gone: the serving client looks for its return
            raise
        for path, reason in answer.rejected.items():
            logger.info("serving refused %s: %s", path, reason)
        if answer.status.storage_error:
            logger.warning("serving: %s", answer.status.storage_error)
        self.last_status = answer.status
        serving.observe_instance(answer.serving_instance)
        return answer

    def _summary(self) -> str:
        status = self.last_status
        if status is None:
            return "not synced"
        return f"{status.files_indexed} files indexed, {status.files_pending} pending"


def _log_retry(retry_state: RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "?"
    wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
    logger.info("workspace sync failed (%s); retrying in %.1f s", code, wait)


def register(server: QuillLanguageServer) -> None:
    sync = WorkspaceSync(server)
    server.initialized_hooks.append(sync.start)  # in the background; retries while away
    server.shutdown_hooks.append(sync.close)
    server.document_listeners.append(sync.document_changed)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def on_save(ls: QuillLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        sync.document_changed(params.text_document.uri, delay_s=0.0)


def _over_a_cap(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
