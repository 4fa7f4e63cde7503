"""One workspace's API catalog: its own definitions, the packages it imports, the stdlib.

Built from the synced workspace (serving/workspaces.py) and kept current by its change
listener: a changed file or package replaces only its own entries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from quill import python_api
from quill.v1 import quill_pb2 as pb
from serving.api_search.index import ApiIndex, Encode, ScoredEntry, entry_text

logger = logging.getLogger(__name__)

MAX_ENTRIES_PER_FILE = 500


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
    """The searchable catalog of one workspace (stdlib vectors are shared, not re-embedded)."""

    def __init__(
        self, encode: Encode, dimension: int, stdlib: tuple[Sequence[pb.ApiEntry], np.ndarray]
    ) -> None:
        self._encode = encode
        self.index = ApiIndex(dimension)
        self.index.add(list(stdlib[0]), stdlib[1])
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
                await self._set_packages_async(workspace.packages())
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
                await self._set_packages_async(workspace.packages())

    def search(self, query: str, query_vector: np.ndarray | None, k: int) -> list[ScoredEntry]:
        return self.index.search(query, query_vector, k)

    def members(self, qualified: str) -> list[str]:
        """Names directly under a module or class, e.g. members("json") -> ["dumps", ...]."""
        if self._members is None:
            members: dict[str, list[str]] = {}
            for name in self.names():
                parent, _, member = name.rpartition(".")
                if parent:
                    members.setdefault(parent, []).append(member)
            self._members = members
        return self._members.get(qualified, [])

    def names(self) -> set[str]:
        """Every qualified name in the catalog (for existence checks)."""
        if self._names is None:
            self._names = {e.qualified_name for e in self.index.entries()}
        return self._names
