"""Server-initiated work-done progress (`window/workDoneProgress/create`, then `$/progress`
begin / report / end), for long-running features; a no-op when the client cannot show it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from lsprotocol import types
from pygls.lsp.server import LanguageServer

logger = logging.getLogger(__name__)


class WorkDoneProgress:
    def __init__(self, ls: LanguageServer, title: str, token_prefix: str = "quill") -> None:
        self._ls = ls
        self._title = title
        self.token = f"{token_prefix}-{uuid.uuid4().hex}"
        self._active = False

    async def begin(self, message: str = "", cancellable: bool = False) -> None:
        window = self._ls.client_capabilities.window
        if window is None or not window.work_done_progress:
            return
        try:
            await asyncio.wait_for(self._ls.work_done_progress.create_async(self.token), 5)
        except Exception as error:  # noqa: BLE001 - progress is a nicety; the work goes on
            logger.info("no progress shown: %s", error)
            return
        self._active = True
        self._ls.work_done_progress.begin(
            self.token,
            types.WorkDoneProgressBegin(
                title=self._title, message=message, cancellable=cancellable, percentage=0
            ),
        )

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the user presses the progress' cancel button."""
        future = self._ls.work_done_progress.tokens.get(self.token)
        if future is not None:
            future.add_done_callback(lambda done: callback() if done.cancelled() else None)

    def report(self, message: str, percentage: int) -> None:
        if self._active:
            self._ls.work_done_progress.report(
                self.token,
                types.WorkDoneProgressReport(message=message, percentage=min(100, percentage)),
            )

    def end(self, message: str) -> None:
        if not self._active:
            return
        self._active = False
        self._ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        self._ls.work_done_progress.tokens.pop(self.token, None)
