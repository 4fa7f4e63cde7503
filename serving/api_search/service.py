"""API search over each workspace's catalog: the SearchApi RPC and the tools of generation.

Catalogs are built on first use (in worker threads: extraction and embedding are CPU work) and
then follow the workspace's syncs through its change listener. A workspace serving does not
know (or no workspace id) searches the standard library alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quill.v1 import quill_pb2 as pb
from serving.api_search.catalog import WorkspaceCatalog
from serving.api_search.index import ScoredEntry
from serving.api_search.stdlib import load_stdlib
from serving.api_search.tools import ApiToolsConfig, ToolSession
from serving.config import ApiSearchConfig
from serving.engine.base import Engine
from serving.errors import InvalidRequestError
from serving.request_limits import at_most, at_most_chars

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
    `workspaces` is serving.workspaces.WorkspaceRegistry (None: stdlib only).
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
        self._catalogs: dict[str, WorkspaceCatalog] = {}
        self._building: dict[str, asyncio.Task[WorkspaceCatalog]] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._stdlib: tuple[list[pb.ApiEntry], np.ndarray] | None = None

    def _encode(self, texts: Any) -> np.ndarray:
        return self._query_embedder().encode(texts)  # type: ignore[no-any-return]

    def _build(self) -> WorkspaceCatalog:
        embedder = self._embedder()
        if self._stdlib is None:
            model_id = str(getattr(embedder, "model_path", type(embedder).__name__))
            self._stdlib = load_stdlib(self._cache_dir, embedder.encode, model_id)
        return WorkspaceCatalog(embedder.encode, embedder.dimension, self._stdlib)

    async def catalog(self, workspace_id: str) -> WorkspaceCatalog:
        workspace = self._workspaces.get(workspace_id) if self._workspaces else None
        key = workspace_id if workspace is not None else ""
        if key in self._catalogs:
            return self._catalogs[key]
        self.ready_catalog(workspace_id)
        return await asyncio.shield(self._building[key])

    async def _create(self, key: str, workspace: Any | None) -> WorkspaceCatalog:
        # The stdlib part (cached on disk) comes first and the catalog answers from then on;
        # the workspace's files and packages are embedded in the background, so a search
        # never waits for a large workspace.
        try:
            catalog = await asyncio.to_thread(self._build)
        finally:
            self._building.pop(key, None)
        self._catalogs[key] = catalog
        if workspace is not None:

            def on_change(change: Any) -> None:
                # Called on the event loop after each sync; the work runs in threads.
                asyncio.ensure_future(catalog.apply(workspace, change))

            workspace.add_listener(on_change)
            self._loading[key] = asyncio.ensure_future(catalog.load_async(workspace))
        logger.info("API catalog ready: %d stdlib entries", len(catalog.index))
        return catalog

    async def close(self) -> None:
        """Stop loading catalogs in the background (on shutdown)."""
        pending: list[asyncio.Future[Any]] = [*self._loading.values(), *self._building.values()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def loaded(self, workspace_id: str) -> WorkspaceCatalog:
        """The catalog once the workspace's files and packages are in it too."""
        catalog = await self.catalog(workspace_id)
        task = self._loading.get(workspace_id)
        if task is not None:
            await asyncio.shield(task)
        return catalog

    def ready_catalog(self, workspace_id: str) -> WorkspaceCatalog | None:
        """The catalog if it is built; otherwise start building it and return None."""
        workspace = self._workspaces.get(workspace_id) if self._workspaces else None
        key = workspace_id if workspace is not None else ""
        catalog = self._catalogs.get(key)
        if catalog is None and key not in self._building:
            self._building[key] = asyncio.ensure_future(self._create(key, workspace))
        return catalog

    def tool_session(
        self, request: pb.CompleteRequest, engine: Engine, config: ApiToolsConfig
    ) -> ToolSession | None:
        """Tool use for one completion (None when the request turned API search off)."""
        if request.context.disable_api_search:
            return None
        # Only a synced workspace starts a catalog build from a completion: building one costs
        # seconds of CPU, which a completion without a workspace should never trigger.
        synced = self._workspaces is not None and self._workspaces.get(request.workspace_id)
        catalog = self.ready_catalog(request.workspace_id) if synced else None

        async def search(query: str, limit: int) -> list[ScoredEntry]:
            return await self.search(
                request.workspace_id, query[: self.config.max_query_chars], limit
            )

        return ToolSession(
            engine,
            search,
            config,
            request.prefix,
            members=catalog.members if catalog is not None else None,
        )

    async def search(self, workspace_id: str, query: str, limit: int) -> list[ScoredEntry]:
        """Best entries for `query` (validated; raises InvalidRequestError on bad input)."""
        validate_query(query, limit, self.config)
        catalog = await self.catalog(workspace_id)
        vector = (await asyncio.to_thread(self._encode, [query]))[0]
        return catalog.search(query, vector, limit or self.config.default_limit)

    async def handle(self, request: pb.SearchApiRequest) -> pb.SearchApiResponse:
        started = time.perf_counter()
        validate_query(request.query, request.limit, self.config)
        try:
            await asyncio.wait_for(self.loaded(request.workspace_id), self.config.load_wait_s)
        except TimeoutError:
            logger.info("API search answers before the workspace's catalog is complete")
        found = await self.search(request.workspace_id, request.query, request.limit)
        return pb.SearchApiResponse(
            hits=[pb.ApiHit(entry=hit.entry, score=hit.score) for hit in found],
            latency_ms=(time.perf_counter() - started) * 1e3,
        )


@dataclass
class ApiTools:
    """What CompletionService holds: a tool session per completion."""

    service: ApiSearchService
    config: ApiToolsConfig

    def session(self, request: pb.CompleteRequest, engine: Engine) -> ToolSession | None:
        return self.service.tool_session(request, engine, self.config)
