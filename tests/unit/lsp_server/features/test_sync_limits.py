"""A workspace serving will not take (past a cap): the language server says so once, stops
retrying, and completions go on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from serving.config import LimitsConfig
from tests.conftest import in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete_at_end, open_document
from tests.support.retrieval_workspace import initialize_in


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def test_the_language_server_tells_the_user_once_and_keeps_completing(
    client: LanguageClient, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.py").write_text(f"{name} = 1\n")
    engine = ScriptedEngine(chunks=["2"])
    async with in_process_serving(engine, limits=LimitsConfig(files_per_workspace=2)) as address:
        await initialize_in(client, tmp_path, address)
        for _ in range(100):
            told = [m.message for m in client.messages if "did not take" in m.message]
            if told:
                break
            await asyncio.sleep(0.1)
        assert told == [
            "Quill: serving did not take this workspace: the workspace would hold 3 files; "
            "the limit is 2 per workspace (quill serve --files-per-workspace)"
        ]
        uri = (tmp_path / "a.py").as_uri()
        open_document(client, uri, "a = ")
        result = await complete_at_end(client, uri, "a = ")
        assert [item.insert_text for item in result.items] == ["2"]
