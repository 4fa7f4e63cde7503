"""textDocument/inlineCompletion (LSP 3.18), backed by serving's Complete RPC."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.acceptance import ACCEPT_COMMAND
from lsp_server.documents import (
    InvalidPositionError,
    UnusableDocumentError,
    cursor_context,
)
from lsp_server.server import QuillLanguageServer
from lsp_server.serving_client import Completion
from lsp_server.trigger import choose_mode
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

_EMPTY = types.InlineCompletionList(items=[])


def workspace_id(ls: QuillLanguageServer) -> str:
    """A stable opaque id of the workspace root (serving never sees the path itself)."""
    root = ls.workspace.root_uri or ""
    return hashlib.sha256(root.encode()).hexdigest()[:16]


def relative_path(ls: QuillLanguageServer, uri: str) -> str:
    path = unquote(urlparse(uri).path)
    root = unquote(urlparse(ls.workspace.root_uri or "").path)
    if root and path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1 :]
    return path.rsplit("/", 1)[-1]


def register(server: QuillLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: QuillLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        uri = params.text_document.uri
        document = ls.workspace.text_documents.get(uri)
        if document is None:
            logger.info("inline completion for a document that is not open: %s", uri)
            return _EMPTY
        settings = ls.settings
        try:
            context = cursor_context(
                document,
                params.position,
                settings.max_document_bytes,
                settings.max_prefix_chars,
                settings.max_suffix_chars,
            )
        except InvalidPositionError as error:
            raise JsonRpcInvalidParams(str(error)) from error
        except UnusableDocumentError as error:
            logger.info("no completion for %s: %s", uri, error)
            return _EMPTY

        hit = ls.typeahead.lookup(uri, context.offset, context.prefix)
        if hit is not None:
            return _items(params.position, hit.suggestion_id, hit.remaining)

        request = pb.CompleteRequest(
            workspace_id=workspace_id(ls),
            file_path=relative_path(ls, uri),
            language=document.language_id or "",
            prefix=context.prefix,
            suffix=context.suffix,
            cursor=pb.Position(line=params.position.line, character=params.position.character),
            mode=choose_mode(settings.completion_mode, document.language_id or "", context),
            limits=pb.CompletionLimits(max_tokens=settings.max_tokens),
        )
        started = time.perf_counter()

        async def ask_serving() -> Completion | None:
            if settings.debounce_ms:
                await asyncio.sleep(settings.debounce_ms / 1e3)
            return await ls.serving_client().complete(request, settings.request_timeout_s)

        # A newer request for the same document supersedes this one: its RPC is cancelled,
        # which aborts the engine request, and this one answers with nothing.
        previous = ls.inflight.get(uri)
        if previous is not None and not previous.done():
            previous.cancel()
            ls.superseded_count += 1
        call = asyncio.ensure_future(ask_serving())
        ls.inflight[uri] = call
        try:
            completion = await call
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the client cancelled this request itself ($/cancelRequest)
            return _EMPTY
        finally:
            if ls.inflight.get(uri) is call:
                del ls.inflight[uri]
        if completion is None or not completion.text:
            return _EMPTY
        suggestion_id = completion.done.suggestion_id
        ls.shown_count += 1
        ls.telemetry.returned(
            suggestion_id,
            uri,
            completion.text,
            document.language_id or "",
            time.perf_counter() - started,
        )
        ls.typeahead.remember(uri, context.offset, context.prefix, suggestion_id, completion.text)
        return _items(params.position, suggestion_id, completion.text)


def _items(position: types.Position, suggestion_id: str, text: str) -> types.InlineCompletionList:
    item = types.InlineCompletionItem(
        insert_text=text,
        range=types.Range(start=position, end=position),
        command=types.Command(
            title="Accept Quill suggestion",
            command=ACCEPT_COMMAND,
            arguments=[suggestion_id, len(text)],
        ),
    )
    return types.InlineCompletionList(items=[item])
