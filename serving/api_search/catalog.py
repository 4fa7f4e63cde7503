"""One workspace's API catalog: its own definitions, the packages it imports, the stdlib.

Built from the synced workspace (serving/workspaces.py) and kept current by its change
listener: a changed file or package replaces only its own entries. The standard library's part
is one index per process (StdlibLayer), searched together with the workspace's own entries and
never copied into it: a catalog costs only what the workspace adds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from quill import python_api
from quill.v1 import quill_pb2 as pb
from serving.api_search.index import ApiIndex, Encode, ScoredEntry, entry_text, search_layers

logger = logging.getLogger(__name__)

MAX_ENTRIES_PER_FILE = 500
# Ids of a workspace's own entries start here, apart from the standard library's.
_WORKSPACE_FIRST_ID = 1 << 40


class StdlibLayer:
    """The standard library's entries, indexed once and shared (read-only) by every catalog."""

    def __init__(self, entries: Sequence[pb.ApiEntry], vectors: np.ndarray, dimension: int):
        self.index = ApiIndex(dimension)
        self.index.add(list(entries), vectors)
        self.names = frozenset(e.qualified_name for e in entries)
        self.members = _members_of(self.names)


def _members_of(names: Iterable[str]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for name in names:
        parent, _, member = name.rpartition(".")
        if parent:
            members.setdefault(parent, []).append(member)
    return members


class SyncedWorkspace(Protocol):
    """What the catalog reads of serving.workspaces.Workspace."""

    def paths(self) -> list[str]: ...

    def file_text(self, path: str) -> str | None: ...

    def packages(self) -> dict[str, pb.ApiPackage]: ...


def workspace_entries(path: str, text: str) -> list[pb.ApiEntry]:
    """Definitions in one synced Python file (source "workspace", with path and line)."""
    module = python_api.module_name_for_path(path)
    if module is None:
        return []
    try:
        found = list(python_api.definitions(module, text))
    except (SyntaxError, ValueError, RecursionError):
        # A file being edited may not parse; its previous entries were already dropped.
        return []
    return [
        pb.ApiEntry(
            qualified_name=d.qualified_name,
            kind=d.kind,
            signature=d.signature,
            summary=d.summary,
            source="workspace",
            path=path,
            line=d.line,
        )
        for d in found[:MAX_ENTRIES_PER_FILE]
    ]


class WorkspaceCatalog:
    """The searchable catalog of one workspace: its own entries in `index`, the standard
    library's in the shared `stdlib` layer."""

    def __init__(self, encode: Encode, dimension: int, stdlib: StdlibLayer) -> None:
        self._encode = encode
        self._stdlib = stdlib
        self.index = ApiIndex(dimension, first_id=_WORKSPACE_FIRST_ID)
        self._by_path: dict[str, list[int]] = {}
        self._by_package: dict[str, tuple[str, list[int]]] = {}
        self._names: set[str] | None = None
        self._members: dict[str, list[str]] | None = None
        self._lock = asyncio.Lock()

    def _add(self, entries: list[pb.ApiEntry]) -> list[int]:
        vectors = self._encode([entry_text(e) for e in entries])
        ids = self.index.add(entries, vectors)
        # Reset after the add: a lookup between the two would cache names without them.
        self._names = self._members = None
        return ids

    def set_file(self, path: str, text: str | None) -> None:
        """Replace the entries of one file (None: the file is gone). Blocking (embeds)."""
        self.index.remove(self._by_path.pop(path, []))
        self._names = self._members = None
        if text is not None:
            entries = workspace_entries(path, text)
            if entries:
                self._by_path[path] = self._add(entries)

    def set_packages(self, packages: dict[str, pb.ApiPackage]) -> None:
        """Bring packages to `packages`: only new digests are embedded. Blocking."""
        for name in self.stale_packages(packages):
            self.set_package(name, None)
        for name, package in packages.items():
            self.set_package(name, package)

    def stale_packages(self, packages: dict[str, pb.ApiPackage]) -> list[str]:
        """Names held whose package is gone or has another digest now."""
        return [
            name
            for name, (digest, _) in self._by_package.items()
            if name not in packages or packages[name].digest != digest
        ]

    def set_package(self, name: str, package: pb.ApiPackage | None) -> None:
        """Hold `package` under `name` (None: drop it); embeds only a new digest. Blocking."""
        held = self._by_package.get(name)
        if held is not None and package is not None and held[0] == package.digest:
            return
        if held is not None:
            self.index.remove(held[1])
            del self._by_package[name]
            self._names = self._members = None
        if package is not None:
            self._by_package[name] = (package.digest, self._add(list(package.entries)))

    async def _set_packages_async(self, packages: dict[str, pb.ApiPackage]) -> None:
        # One package per worker-thread call, like files: a shutdown cancels between packages
        # (the process cannot exit while a worker thread is still embedding).
        for name in self.stale_packages(packages):
            await asyncio.to_thread(self.set_package, name, None)
        for name, package in packages.items():
            await asyncio.to_thread(self.set_package, name, package)

    def load(self, workspace: SyncedWorkspace) -> None:
        """Index everything the workspace holds now. Blocking."""
        for path in workspace.paths():
            if path.endswith(".py"):
                self.set_file(path, workspace.file_text(path))
        self.set_packages(workspace.packages())

    async def load_async(self, workspace: SyncedWorkspace) -> None:
        async with self._lock:
            try:
                # One file per worker-thread call: a shutdown cancels between files instead of
                # waiting until the whole workspace is embedded (the same for packages).
                for path in workspace.paths():
                    if path.endswith(".py"):
                        await asyncio.to_thread(self.set_file, path, workspace.file_text(path))
                await self._set_packages_async(await asyncio.to_thread(workspace.packages))
            except Exception:  # noqa: BLE001 - a failed load leaves the stdlib part working
                logger.exception("loading the workspace's API entries failed")

    async def apply(self, workspace: SyncedWorkspace, change: Any) -> None:
        """Apply one WorkspaceChange (changed_paths, deleted_paths, changed_packages)."""
        async with self._lock:
            for path in change.deleted_paths:
                await asyncio.to_thread(self.set_file, path, None)
            for path in change.changed_paths:
                if path.endswith(".py"):
                    await asyncio.to_thread(self.set_file, path, workspace.file_text(path))
            if change.changed_packages:
                await self._set_packages_async(await asyncio.to_thread(workspace.packages))

    def search(self, query: str, query_vector: np.ndarray | None, k: int) -> list[ScoredEntry]:
        return search_layers([self._stdlib.index, self.index], query, query_vector, k)

    def members(self, qualified: str) -> list[str]:
        """Names directly under a module or class, e.g. members("json") -> ["dumps", ...]."""
        if self._members is None:
            self._members = _members_of(self._own_names())
        own = self._members.get(qualified, [])
        shared = self._stdlib.members.get(qualified, [])
        return shared + [m for m in own if m not in shared] if own else shared

    def names(self) -> set[str]:
        """Every qualified name in the catalog (for existence checks)."""
        return set(self._stdlib.names) | self._own_names()

    def _own_names(self) -> set[str]:
        if self._names is None:
            self._names = {e.qualified_name for e in self.index.entries()}
        return self._names
