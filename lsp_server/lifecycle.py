"""initialize / initialized / shutdown: settings and the serving connection."""

from __future__ import annotations

import logging

from lsprotocol import types

from lsp_server.extensions import INLINE_COMPLETION_REFRESH_CAPABILITY
from lsp_server.server import QuillLanguageServer

logger = logging.getLogger(__name__)


def register(server: QuillLanguageServer) -> None:
    @server.feature(types.INITIALIZE)
    def on_initialize(ls: QuillLanguageServer, params: types.InitializeParams) -> None:
        ls.apply_initialization_options(params.initialization_options)
        experimental = params.capabilities.experimental
        ls.inline_completion_refresh = isinstance(experimental, dict) and bool(
            experimental.get(INLINE_COMPLETION_REFRESH_CAPABILITY)
        )
        logger.info("initialized; serving at %s", ls.settings.serving_address)

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: QuillLanguageServer, params: types.InitializedParams) -> None:
        await ls.serving_client().start()
        if ls.workspace_sync is not None:
            ls.workspace_sync.start()  # in the background; retries while serving is away

    @server.feature(types.SHUTDOWN)
    async def on_shutdown(ls: QuillLanguageServer, params: None) -> None:
        await ls.telemetry.close()  # deliver what is queued, briefly
        if ls.workspace_sync is not None:
            await ls.workspace_sync.close()
        if ls.serving is not None:
            await ls.serving.close()
            ls.serving = None
