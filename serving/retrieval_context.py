"""Retrieved chunks of other workspace files for one completion prompt, placed with the snippets
the editor sent (serving/editor_context.py) in one budget, without duplicates.

The query is the code around the cursor (the last lines of the prefix, where the identifiers the
next line will use usually appear). The document's own lines that are already in the prompt are
excluded, so the context never repeats them. Retrieval runs in a worker thread and is bounded by
`RetrievalConfig.timeout_s`: a slow or absent index costs the completion nothing but the context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.config import RetrievalConfig
from serving.context import ContextBlock, RenderedContext, fuse_blocks, render_context
from serving.editor_context import editor_blocks
from serving.workspace_registry import WorkspaceRegistry
from serving.workspaces import WorkspaceKey

logger = logging.getLogger(__name__)

# Lines of the prefix that form the query.
_QUERY_LINES = 12
_QUERY_MAX_CHARS = 1500


def retrieval_query(prefix: str, suffix: str) -> str:
    """The code around the cursor: the prefix's last lines and the rest of the cursor's line."""
    lines = prefix.split("\n")[-_QUERY_LINES:]
    query = "\n".join(lines) + suffix.split("\n", 1)[0]
    return query[-_QUERY_MAX_CHARS:]


class PromptRetriever:
    def __init__(self, workspaces: WorkspaceRegistry, config: RetrievalConfig) -> None:
        self._workspaces = workspaces
        self._config = config

    async def context_for(
        self,
        tenant: str,
        request: pb.CompleteRequest,
        encode: Callable[[str], list[int]],
        prompt_budget: int,
    ) -> RenderedContext:
        """Rendered context for `request`: the editor's snippets and the chunks retrieved from
        the tenant's workspace of the request's id, fused, without duplicates, within one budget
        (empty when there is neither)."""
        options = request.context
        # The document keeps at least half of the prompt.
        budget = min(
            options.retrieval_token_budget or self._config.token_budget, prompt_budget // 2
        )
        if budget <= 0:
            return RenderedContext()
        cursor_line = request.cursor.line + 1
        shown = (
            cursor_line - request.prefix.count("\n"),
            cursor_line + request.suffix.count("\n"),
        )
        editor = editor_blocks(request, shown)
        retrieved = await self._retrieve(tenant, request, shown)
        if not editor and not retrieved:
            return RenderedContext()
        # The editor's text first on ties: it is what the user sees now, the index may lag.
        blocks = fuse_blocks([editor, retrieved])
        rendered = render_context(
            blocks, request.language, budget, encode, current_path=request.file_path
        )
        logger.debug(
            "context: %d editor snippets, %d retrieved, %d in the prompt",
            len(editor),
            len(retrieved),
            len(rendered.sources),
        )
        return rendered

    async def _retrieve(
        self, tenant: str, request: pb.CompleteRequest, shown: tuple[int, int]
    ) -> list[ContextBlock]:
        """Chunks of other files of the tenant's workspace for `request`, best first ([] when
        retrieval is off, no such workspace of this tenant, or the search too slow)."""
        if (
            not self._config.enabled
            or request.context.disable_retrieval
            or not request.workspace_id
        ):
            return []
        workspace = self._workspaces.get(WorkspaceKey(tenant, request.workspace_id))
        if workspace is None:
            return []
        started = time.perf_counter()
        try:
            hits = await asyncio.wait_for(
                asyncio.to_thread(
                    workspace.search,
                    retrieval_query(request.prefix, request.suffix),
                    self._config.top_k,
                    request.file_path or None,
                    shown,
                ),
                self._config.timeout_s,
            )
        except TimeoutError:
            logger.info("retrieval took over %.2f s; completing without it", self._config.timeout_s)
            hits = []
        metrics.STAGE_DURATION.labels("retrieval").observe(time.perf_counter() - started)
        return [
            ContextBlock("retrieval", h.path, h.start_line, h.end_line, h.text, h.score)
            for h in hits
        ]
