"""initialize / initialized / shutdown: settings, the serving connection, features' hooks."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from lsprotocol import types

from lsp_server.methods import INLINE_COMPLETION_REFRESH_CAPABILITY
from lsp_server.server import QuillLanguageServer

logger = logging.getLogger(__name__)


async def _run(hooks: list[Callable[[], Awaitable[None] | None]]) -> None:
    for hook in hooks:
        result = hook()
        if inspect.isawaitable(result):
            await result


def register(server: QuillLanguageServer) -> None:
    @server.feature(types.INITIALIZE)
    def on_initialize(ls: QuillLanguageServer, params: types.InitializeParams) -> None:
        ls.apply_initialization_options(params.initialization_options)
        experimental = params.capabilities.experimental
        ls.state.inline_completion_refresh = isinstance(experimental, dict) and bool(
            experimental.get(INLINE_COMPLETION_REFRESH_CAPABILITY)
        )
        logger.info("initialized; serving at %s", ls.settings.serving_address)

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: QuillLanguageServer, params: types.InitializedParams) -> None:
        await ls.serving_client().start()
        await _run(ls.initialized_hooks)

    @server.feature(types.SHUTDOWN)
    async def on_shutdown(ls: QuillLanguageServer, params: None) -> None:
        # Features settle their work first (the retention checks send what they know), then
        # telemetry delivers what is queued, briefly.
        await _run(ls.shutdown_hooks)
        await ls.telemetry.close()
        if ls.serving is not None:
            await ls.serving.close()
            ls.serving = None
