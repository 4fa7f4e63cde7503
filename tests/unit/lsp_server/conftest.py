"""The language server as a subprocess over stdio, driven by pytest-lsp (test files that need
another command define their own `client`)."""

from __future__ import annotations

import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import lsp_command


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()
