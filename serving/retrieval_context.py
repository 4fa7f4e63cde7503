"""Retrieved chunks of other workspace files for one completion prompt.

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
from serving.context import ContextBlock, RenderedContext, render_context
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
        """Rendered context for `request` from the tenant's workspace of the request's id (empty
        when disabled, no such workspace of this tenant, or timeout)."""
        options = request.context
        if not self._config.enabled or options.disable_retrieval or not request.workspace_id:
            return RenderedContext()
        workspace = self._workspaces.get(WorkspaceKey(tenant, request.workspace_id))
        if workspace is None:
            return RenderedContext()
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
            metrics.STAGE_DURATION.labels("retrieval").observe(time.perf_counter() - started)
            return RenderedContext()
        blocks = [
            ContextBlock("retrieval", h.path, h.start_line, h.end_line, h.text, h.score)
            for h in hits
        ]
        rendered = render_context(
            blocks, request.language, budget, encode, current_path=request.file_path
        )
        metrics.STAGE_DURATION.labels("retrieval").observe(time.perf_counter() - started)
        logger.debug("retrieval: %d hits, %d in the prompt", len(hits), len(rendered.sources))
        return rendered
