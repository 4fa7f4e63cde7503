"""The `quill.searchApi` command: search the workspace's API catalog in serving.

Arguments: a query string, or `{"query": str, "limit": int}` (limit 0-100; 0: serving's
default). Result: `{"items": [...]}`, each with the entry (qualified name, kind, signature,
summary, source, path, line), its score and what to insert: `insertText` (plain) and `snippet`
(LSP snippet syntax, required parameters as placeholders). Editors show the items in a picker
(VS Code quick pick, Neovim vim.ui.select) and insert the chosen snippet; `quill api-search`
prints them.
"""

from __future__ import annotations

import ast
import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams

from lsp_server.methods import SEARCH_API_COMMAND
from lsp_server.options import checked, structure_arguments
from lsp_server.server import QuillLanguageServer
from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

# The first search of a session waits this long for the initial workspace sync, so its
# results include the workspace's own definitions and packages.
_SYNC_WAIT_S = 30.0
# The first search of a serving process may build the catalog (embeds the stdlib once).
_TIMEOUT_S = 300.0


def _required_parameters(signature: str) -> list[str]:
    """Parameters of `name(a, b=1, *, c)` a call must pass: ["a", "c"]."""
    head, _, rest = signature.partition("(")
    params = rest.rpartition(")")[0]
    try:
        tree = ast.parse(f"def f({params}): pass")
    except SyntaxError:
        return []
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    required = [a.arg for a in positional[: len(positional) - len(args.defaults)]]
    required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    keyword_only = {a.arg for a in args.kwonlyargs}
    return [f"{name}={name}" if name in keyword_only else name for name in required]


def insertion(entry: pb.ApiEntry) -> tuple[str, str]:
    """(plain text, snippet) that calls or names the entry."""
    name = entry.qualified_name.removeprefix("builtins.")
    if entry.kind in ("function", "method", "class"):
        params = _required_parameters(entry.signature)
        plain = f"{name}({', '.join(params)})"
        placeholders = ", ".join(
            f"${{{i}:{p.replace('}', '')}}}" for i, p in enumerate(params, start=1)
        )
        return plain, f"{name}({placeholders})$0"
    return name, f"{name}$0"


def _item(hit: pb.ApiHit) -> dict[str, Any]:
    entry = hit.entry
    plain, snippet = insertion(entry)
    return {
        "qualifiedName": entry.qualified_name,
        "kind": entry.kind,
        "signature": entry.signature,
        "summary": entry.summary,
        "source": entry.source,
        "path": entry.path,
        "line": entry.line,
        "score": round(hit.score, 6),
        "insertText": plain,
        "snippet": snippet,
    }


@dataclass
class SearchApiArguments:
    query: str = checked(max_chars=1000)
    # 0: serving's default (10); serving refuses more than 100.
    limit: int = checked(0, low=0, high=100)


def _parse(args: tuple[Any, ...]) -> SearchApiArguments:
    first = args[0] if args else None
    if isinstance(first, str):
        first = {"query": first}
    if not isinstance(first, dict):
        raise JsonRpcInvalidParams('quill.searchApi wants a query string or {"query": ...}')
    return structure_arguments(first, SearchApiArguments, SEARCH_API_COMMAND)


async def search_api(ls: QuillLanguageServer, query: str, limit: int) -> dict[str, Any]:
    synced = ls.state.workspace_synced
    if not synced.is_set():
        try:
            await asyncio.wait_for(synced.wait(), _SYNC_WAIT_S)
        except TimeoutError:
            logger.info("API search before the workspace finished syncing")
    wid = ls.workspace_id()
    client = ls.serving_client()
    try:
        response = await client.stub.SearchApi(
            pb.SearchApiRequest(workspace_id=wid, query=query, limit=limit),
            timeout=_TIMEOUT_S,
            metadata=routing_metadata(wid),
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise JsonRpcInvalidParams(error.details() or "invalid query") from error
        raise JsonRpcInternalError(
            f"API search failed: {error.code().name}: {error.details()}"
        ) from error
    return {"items": [_item(hit) for hit in response.hits], "latencyMs": response.latency_ms}


def register(server: QuillLanguageServer) -> None:
    @server.command(SEARCH_API_COMMAND)
    async def on_search_api(ls: QuillLanguageServer, *args: Any) -> dict[str, Any]:
        arguments = _parse(args)
        return await search_api(ls, arguments.query, arguments.limit)
