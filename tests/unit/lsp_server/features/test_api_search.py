"""`quill.searchApi` through a real `quill lsp` subprocess and the real gRPC serving layer
(catalog, embedder and FAISS real; the scripted engine is not used by API search)."""

from __future__ import annotations

import pytest
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.features.api_search import insertion
from quill.v1 import quill_pb2 as pb
from tests.conftest import in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import execute, initialize


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


@pytest.mark.timeout(600)
async def test_search_api_command_returns_entries_with_snippets(client: LanguageClient) -> None:
    async with in_process_serving(ScriptedEngine()) as address:
        await initialize(client, servingAddress=address)
        result = await execute(client, "quill.searchApi", {"query": "join paths", "limit": 5})
        first = result["items"][0]
        assert first["qualifiedName"] == "os.path.join"
        assert first["source"] == "stdlib"
        assert first["snippet"] == "os.path.join(${1:a})$0"
        assert len(result["items"]) <= 5
        partial = await execute(client, "quill.searchApi", "listdi")
        assert partial["items"][0]["qualifiedName"] == "os.listdir"
        with pytest.raises(JsonRpcException, match="empty"):
            await execute(client, "quill.searchApi", "   ")
        with pytest.raises(JsonRpcException, match="query"):
            await execute(client, "quill.searchApi", 42)


def test_insertion_keeps_required_parameters_only() -> None:
    entry = pb.ApiEntry(
        qualified_name="puremagic.from_string",
        kind="function",
        signature="from_string(string: str | bytes, mime: bool = False, *, key, opt=None)",
    )
    assert insertion(entry) == (
        "puremagic.from_string(string, key=key)",
        "puremagic.from_string(${1:string}, ${2:key=key})$0",
    )
    constant = pb.ApiEntry(qualified_name="os.sep", kind="constant", signature="sep")
    assert insertion(constant) == ("os.sep", "os.sep$0")
    builtin = pb.ApiEntry(qualified_name="builtins.len", kind="function", signature="len(obj, /)")
    assert insertion(builtin)[0] == "len(obj)"


async def test_bad_arguments_are_invalid_params_naming_the_field(client: LanguageClient) -> None:
    # Nothing listens there: the workspace sync fails at once (with retrieval off it would
    # extract the environment's package APIs instead, a minute of CPU on a loaded machine).
    await initialize(client, servingAddress="127.0.0.1:9", retrieval=True)
    for arguments, message in (
        ({"query": "json", "limit": 2**40}, "limit takes integers from 0 to 100"),
        ({"query": "json", "limit": -1}, "limit takes integers"),
        ({"query": "json", "limit": "5"}, "limit takes integers"),
        ({"query": "json", "limit": True}, "limit takes integers"),
        ({"query": "json", "colour": "red"}, "unknown argument 'colour'"),
        ({"limit": 5}, "query is required"),
        ({"query": "x" * 1001}, "query takes text of at most 1000 characters"),
    ):
        with pytest.raises(JsonRpcException, match=message) as caught:
            await execute(client, "quill.searchApi", arguments)
        assert caught.value.code == -32602, arguments
