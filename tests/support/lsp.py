"""What the tests do with a pytest-lsp client again and again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.conftest import ROOT


async def initialize(
    client: LanguageClient,
    capabilities: types.ClientCapabilities | None = None,
    root: Path = ROOT,
    **options: Any,
) -> types.InitializeResult:
    """Initialize with `options` as initializationOptions (camelCase settings).

    Workspace sync (retrieval) is off unless a test turns it on: the root is this repository,
    which other tests have no reason to upload and index. A `root` without Python files also
    spares serving the API catalog of the packages they import.
    """
    options.setdefault("retrieval", False)
    return await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities or types.ClientCapabilities(),
            root_uri=root.as_uri(),
            initialization_options=options,
        )
    )


def open_document(client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=text
            )
        )
    )


async def complete(client: LanguageClient, uri: str, line: int, character: int) -> Any:
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )


async def complete_at_end(client: LanguageClient, uri: str, text: str) -> Any:
    """Inline completion with the cursor at the end of `text` (ASCII text)."""
    lines = text.split("\n")
    return await complete(client, uri, len(lines) - 1, len(lines[-1]))


async def execute(client: LanguageClient, command: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=list(arguments))
    )


def edit(
    client: LanguageClient,
    uri: str,
    version: int,
    start: tuple[int, int],
    end: tuple[int, int],
    text: str,
) -> None:
    """An incremental change replacing the range start..end (line, character) with `text`."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(*start), end=types.Position(*end)),
                    text=text,
                )
            ],
        )
    )
