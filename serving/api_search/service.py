"""API search over each workspace's catalog: the SearchApi RPC and the tools of generation.

Catalogs are built on first use (in worker threads: extraction and embedding are CPU work) and
then follow the workspace's syncs through its change listener. Workspaces are the caller's
tenant's only (serving/workspaces.py WorkspaceKey); a workspace the tenant does not have (or no
workspace id) searches the standard library alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quill.v1 import quill_pb2 as pb
from serving.api_search.catalog import StdlibLayer, WorkspaceCatalog
from serving.api_search.index import ScoredEntry
from serving.api_search.stdlib import load_stdlib
from serving.api_search.tools import ApiToolsConfig, ToolSession
from serving.config import ApiSearchConfig
from serving.engine.base import Engine
from serving.errors import InvalidRequestError
from serving.request_limits import at_most, at_most_chars
from serving.workspaces import WorkspaceKey

logger = logging.getLogger(__name__)


def validate_query(query: str, limit: int, config: ApiSearchConfig) -> None:
    if not query.strip():
        raise InvalidRequestError("the API search query is empty")
    # Checked at the edge too; searches from inside completions do not pass there.
    at_most_chars("query", query, config.max_query_chars)
    if "\x00" in query:
        raise InvalidRequestError("the API search query contains NUL characters")
    at_most("limit", limit, config.max_limit)


class ApiSearchService:
    """Owns one catalog per workspace.

    `embedder()` returns the shared retrieval.embedding.Embedder (loaded on first call);
    `workspaces` is serving.workspace_registry.WorkspaceRegistry (None: stdlib only).
    """

    def __init__(
        self,
        embedder: Callable[[], Any],
        cache_dir: Path,
        workspaces: Any | None = None,
        config: ApiSearchConfig | None = None,
        query_embedder: Callable[[], Any] | None = None,
    ) -> None:
        """`query_embedder` (default: `embedder`) embeds queries, so a query never waits
        behind a catalog being embedded."""
        self._embedder = embedder
        self._query_embedder = query_embedder or embedder
        self._cache_dir = cache_dir
        self._workspaces = workspaces
        self.config = config or ApiSearchConfig()
        # Keyed by workspace; None: the standard library alone.
        self._catalogs: dict[WorkspaceKey | None, WorkspaceCatalog] = {}
        self._building: dict[WorkspaceKey | None, asyncio.Task[WorkspaceCatalog]] = {}
        self._loading: dict[WorkspaceKey | None, asyncio.Future[None]] = {}
        # The standard library's part of every catalog: built once per process, shared.
        self._stdlib: StdlibLayer | None = None
        self._stdlib_lock = threading.Lock()
        if workspaces is not None and hasattr(workspaces, "add_unload_listener"):
            workspaces.add_unload_listener(self.forget)

    def _encode(self, texts: Any) -> np.ndarray:
        return self._query_embedder().encode(texts)  # type: ignore[no-any-return]

    def _build(self) -> WorkspaceCatalog:
        embedder = self._embedder()
        with self._stdlib_lock:
            if self._stdlib is None:
                model_id = str(getattr(embedder, "model_path", type(embedder).__name__))
                entries, vectors = load_stdlib(self._cache_dir, embedder.encode, model_id)
                self._stdlib = StdlibLayer(entries, vectors, embedder.dimension)
                logger.info("API catalog: %d standard library entries, shared", len(entries))
        return WorkspaceCatalog(embedder.encode, embedder.dimension, self._stdlib)

    def _synced(self, key: WorkspaceKey) -> tuple[WorkspaceKey | None, Any | None]:
        """The catalog key and workspace for `key`: (None, None) if the tenant has no such
        workspace."""
        workspace = self._workspaces.get(key) if self._workspaces else None
        return (key, workspace) if workspace is not None else (None, None)

    async def catalog(self, key: WorkspaceKey) -> WorkspaceCatalog:
        found, _ = self._synced(key)
        if found in self._catalogs:
            return self._catalogs[found]
        self.ready_catalog(key)
        return await asyncio.shield(self._building[found])

    async def _create(self, key: WorkspaceKey | None, workspace: Any | None) -> WorkspaceCatalog:
        # The stdlib part (cached on disk) comes first and the catalog answers from then on;
        # the workspace's files and packages are embedded in the background, so a search
        # never waits for a large workspace.
        try:
            catalog = await asyncio.to_thread(self._build)
        finally:
            self._building.pop(key, None)
        registry = self._workspaces
        if key is not None and registry is not None and registry.resident(key) is not workspace:
            return catalog  # the workspace left memory meanwhile: answer, keep nothing
        self._catalogs[key] = catalog
        if workspace is not None:

            def on_change(change: Any) -> None:
                # Called on the event loop after each sync; the work runs in threads.
                asyncio.ensure_future(catalog.apply(workspace, change))

            workspace.add_listener(on_change)
            self._loading[key] = asyncio.ensure_future(catalog.load_async(workspace))
        return catalog

    def forget(self, key: WorkspaceKey) -> None:
        """Drop the catalog of a workspace that left memory (it is built again when used)."""
        self._catalogs.pop(key, None)
        loading = self._loading.pop(key, None)
        if loading is not None:
            loading.cancel()

    async def close(self) -> None:
        """Stop loading catalogs in the background (on shutdown)."""
        pending: list[asyncio.Future[Any]] = [*self._loading.values(), *self._building.values()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def loaded(self, key: WorkspaceKey) -> WorkspaceCatalog:
        """The catalog once the workspace's files and packages are in it too."""
        catalog = await self.catalog(key)
        task = self._loading.get(key)
        if task is not None:
            await asyncio.shield(task)
        return catalog

    def ready_catalog(self, key: WorkspaceKey) -> WorkspaceCatalog | None:
        """The catalog if it is built; otherwise start building it and return None."""
        found, workspace = self._synced(key)
        catalog = self._catalogs.get(found)
        if catalog is None and found not in self._building:
            self._building[found] = asyncio.ensure_future(self._create(found, workspace))
        return catalog

    def tool_session(
        self, tenant: str, request: pb.CompleteRequest, engine: Engine, config: ApiToolsConfig
    ) -> ToolSession | None:
        """Tool use for one completion of `tenant` (None when the request turned it off)."""
        if request.context.disable_api_search:
            return None
        key = WorkspaceKey(tenant, request.workspace_id)
        # Only a synced workspace starts a catalog build from a completion: building one costs
        # seconds of CPU, which a completion without a workspace should never trigger.
        synced = self._synced(key)[0] is not None
        catalog = self.ready_catalog(key) if synced else None

        async def search(query: str, limit: int) -> list[ScoredEntry]:
            return await self.search(key, query[: self.config.max_query_chars], limit)

        return ToolSession(
            engine,
            search,
            config,
            request.prefix,
            members=catalog.members if catalog is not None else None,
        )

    async def search(self, key: WorkspaceKey, query: str, limit: int) -> list[ScoredEntry]:
        """Best entries for `query` (validated; raises InvalidRequestError on bad input)."""
        validate_query(query, limit, self.config)
        catalog = await self.catalog(key)
        vector = (await asyncio.to_thread(self._encode, [query]))[0]
        return catalog.search(query, vector, limit or self.config.default_limit)

    async def handle(self, tenant: str, request: pb.SearchApiRequest) -> pb.SearchApiResponse:
        started = time.perf_counter()
        validate_query(request.query, request.limit, self.config)
        key = WorkspaceKey(tenant, request.workspace_id)
        try:
            await asyncio.wait_for(self.loaded(key), self.config.load_wait_s)
        except TimeoutError:
            logger.info("API search answers before the workspace's catalog is complete")
        found = await self.search(key, request.query, request.limit)
        return pb.SearchApiResponse(
            hits=[pb.ApiHit(entry=hit.entry, score=hit.score) for hit in found],
            latency_ms=(time.perf_counter() - started) * 1e3,
        )


@dataclass
class ApiTools:
    """What CompletionService holds: a tool session per completion."""

    service: ApiSearchService
    config: ApiToolsConfig

    def session(
        self, tenant: str, request: pb.CompleteRequest, engine: Engine
    ) -> ToolSession | None:
        return self.service.tool_session(tenant, request, engine, self.config)
