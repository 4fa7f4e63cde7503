"""Retention checks: how much of each accepted suggestion is still in its document at the
delays of `retentionChecksS` (default 30 s, 2 min, 10 min), sent to serving as RETAINED events.

The measure and the bookkeeping are in lsp_server/retention.py; this feature feeds it document
changes and closes, runs the checks when they fall due, and settles what is left at shutdown
(before telemetry's last delivery, which lifecycle runs after the shutdown hooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lsp_server.retention import RetentionCheck, retention_event
from lsp_server.server import QuillLanguageServer
from quill.retention_checks import DEFAULT_CHECKS_S, check_problem

logger = logging.getLogger(__name__)

# Longest sleep between two looks at the schedule: a check accepted meanwhile is at most this
# late (the shortest delay allowed is 1 s).
_MAX_SLEEP_S = 1.0


class _RetentionChecks:
    def __init__(self, server: QuillLanguageServer) -> None:
        self._server = server
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        ls = self._server
        checks = ls.settings.retention_checks_s
        problem = check_problem(checks)
        if problem is not None:
            ls.notify_user(f"Quill settings: retentionChecksS: {problem} (defaults used)", True)
            checks = list(DEFAULT_CHECKS_S)
        ls.state.retention.checks_s = tuple(checks)
        if checks:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        tracker = self._server.state.retention
        while True:
            due_at = tracker.next_due()
            wait_s = _MAX_SLEEP_S if due_at is None else due_at - tracker.clock()
            await asyncio.sleep(min(_MAX_SLEEP_S, max(0.0, wait_s)))
            self._send(tracker.due())

    def _send(self, checks: list[RetentionCheck]) -> None:
        for check in checks:
            self._server.telemetry.report(retention_event(check))
        if checks:
            logger.debug("%d retention checks reported", len(checks))

    def document_changed(self, uri: str) -> None:
        document = self._server.workspace.text_documents.get(uri)
        if document is not None:
            self._server.state.retention.document_changed(uri, document.source)

    def document_closed(self, uri: str) -> None:
        self._send(self._server.state.retention.closed(uri))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._send(self._server.state.retention.finish())


def register(server: QuillLanguageServer) -> None:
    checks = _RetentionChecks(server)
    server.initialized_hooks.append(checks.start)
    server.document_listeners.append(checks.document_changed)
    server.close_listeners.append(checks.document_closed)
    server.shutdown_hooks.append(checks.stop)
