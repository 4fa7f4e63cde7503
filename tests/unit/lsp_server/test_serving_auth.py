"""The language server authenticates to serving the way users configure it: the local token by
default, a token or token file from the settings, and one clear message when serving refuses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.tokens import hash_token, new_token
from serving.config import SecurityConfig
from tests.conftest import ROOT, in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete_at_end, initialize, open_document

URI = (ROOT / "tests" / "data" / "sample.py").as_uri()
TEXT = "def add(a, b):\n    return "


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _messages(client: LanguageClient, needle: str) -> list[str]:
    for _ in range(50):
        found = [m.message for m in client.messages if needle in m.message]
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


async def test_token_file_setting_is_sent(client: LanguageClient, tmp_path: Path) -> None:
    token = new_token()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {hash_token(token)}\n", encoding="utf-8")
    (tmp_path / "my-token").write_text(token + "\n", encoding="utf-8")
    engine = ScriptedEngine(chunks=["a + b"])
    async with in_process_serving(engine, security=SecurityConfig(token_file=tokens)) as address:
        await initialize(
            client, servingAddress=address, servingTokenFile=str(tmp_path / "my-token")
        )
        open_document(client, URI, TEXT)
        result = await complete_at_end(client, URI, TEXT)
    assert [item.insert_text for item in result.items] == ["a + b"]


async def test_a_refused_token_gives_no_items_and_one_message(client: LanguageClient) -> None:
    engine = ScriptedEngine(chunks=["a + b"])
    async with in_process_serving(engine) as address:
        await initialize(client, servingAddress=address, servingToken=new_token())
        open_document(client, URI, TEXT)
        for _ in range(3):
            result = await complete_at_end(client, URI, TEXT)
            assert result is None or not result.items
    refused = await _messages(client, "refused this client")
    assert len(refused) == 1, refused
    assert "UNAUTHENTICATED" in refused[0]
    assert not engine.requests, "a refused call never reaches the engine"


async def test_an_unreadable_token_file_is_reported(client: LanguageClient) -> None:
    await initialize(
        client, servingAddress="127.0.0.1:9", servingTokenFile="/nonexistent/quill-token"
    )
    open_document(client, URI, TEXT)
    await complete_at_end(client, URI, TEXT)
    found = await _messages(client, "cannot read the token file /nonexistent/quill-token")
    assert found
