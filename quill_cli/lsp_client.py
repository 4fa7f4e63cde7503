"""A language-server client over stdio, for `quill complete` and the latency benchmark.

It starts `quill lsp` as a subprocess and talks real LSP to it, so whatever these tools measure
is the path an editor takes.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_server.methods import INLINE_COMPLETION_REFRESH, INLINE_COMPLETION_REFRESH_CAPABILITY

logger = logging.getLogger(__name__)


def read_source_file(path: Path) -> str | None:
    """The text of a file the command line names, or None after logging why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        logger.error("cannot read %s: %s", path, error)
        return None


class StdioLanguageClient:
    def __init__(
        self,
        root: Path,
        initialization_options: dict[str, Any] | None = None,
        on_refresh: Callable[[str], None] | None = None,
    ) -> None:
        """`on_refresh(uri)`: the server says the suggestion shown for `uri` grew (a streamed
        block's next lines); given, the client declares that it takes such refreshes."""
        self.root = root.resolve()
        self.initialization_options = initialization_options or {}
        self.client = LanguageClient("quill-cli", "0.1.0")
        self.messages: list[str] = []
        self._takes_refresh = on_refresh is not None

        # pygls registers plain functions only (it tags them), not bound methods.
        def on_message(params: types.ShowMessageParams | types.LogMessageParams) -> None:
            self.messages.append(params.message)

        self.client.feature(types.WINDOW_SHOW_MESSAGE)(on_message)
        self.client.feature(types.WINDOW_LOG_MESSAGE)(on_message)
        if on_refresh is not None:

            def on_refresh_notification(params: Any) -> None:
                document = getattr(params, "textDocument", None)
                uri = getattr(document, "uri", None)
                if isinstance(uri, str):
                    on_refresh(uri)

            self.client.feature(INLINE_COMPLETION_REFRESH)(on_refresh_notification)
        self._versions: dict[str, int] = {}
        self.start_seconds = 0.0

    async def start(
        self, command: list[str] | None = None, env: dict[str, str] | None = None
    ) -> float:
        """Start the server (with `env` as its environment, when given) and initialize it;
        returns seconds until `initialize` answered."""
        argv = command or [sys.executable, "-m", "quill", "lsp"]
        started = time.perf_counter()
        await self.client.start_io(argv[0], *argv[1:], env=env)
        await self.client.initialize_async(
            types.InitializeParams(
                process_id=None,
                root_uri=self.root.as_uri(),
                capabilities=types.ClientCapabilities(
                    experimental={INLINE_COMPLETION_REFRESH_CAPABILITY: True}
                    if self._takes_refresh
                    else None
                ),
                initialization_options=self.initialization_options,
            )
        )
        self.start_seconds = time.perf_counter() - started
        self.client.initialized(types.InitializedParams())
        return self.start_seconds

    def open(self, path: Path, text: str, language_id: str = "python") -> str:
        uri = path.resolve().as_uri()
        version = self._versions.get(uri, 0) + 1
        self._versions[uri] = version
        if version == 1:
            self.client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=uri, language_id=language_id, version=version, text=text
                    )
                )
            )
        else:
            self.client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
                )
            )
        return uri

    def close(self, uri: str) -> None:
        """The editor closed the document (the next `open` opens it afresh)."""
        if self._versions.pop(uri, None) is not None:
            self.client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )

    @property
    def server_pid(self) -> int | None:
        """The language server's process id, once started."""
        process = getattr(self.client, "_server", None)
        return process.pid if process is not None else None

    async def inline_completion(
        self, uri: str, line: int, character: int, automatic: bool = False
    ) -> list[types.InlineCompletionItem]:
        """`automatic`: asked as the user types (editors' as-you-type requests), not invoked."""
        kind = types.InlineCompletionTriggerKind
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(
                    trigger_kind=kind.Automatic if automatic else kind.Invoked
                ),
            )
        )
        if result is None:
            return []
        return list(result.items if isinstance(result, types.InlineCompletionList) else result)

    async def execute_command(self, command: str, *arguments: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=command, arguments=list(arguments))
        )

    async def stop(self) -> None:
        try:
            await self.client.shutdown_async(None)
            self.client.exit(None)
        finally:
            await self.client.stop()
