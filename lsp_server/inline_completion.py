"""textDocument/inlineCompletion (LSP 3.18), backed by serving's Complete RPC."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
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
from lsp_server.typeahead import ANCHOR_CHARS, typed_since
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
            context=pb.ContextOptions(
                disable_retrieval=not settings.retrieval,
                retrieval_token_budget=settings.retrieval_token_budget,
            ),
        )
        started = time.perf_counter()

        flight: InFlight

        async def ask_serving() -> Completion | None:
            if settings.debounce_ms:
                await asyncio.sleep(settings.debounce_ms / 1e3)
            flight.asked = True
            return await ls.serving_client().complete(request, settings.request_timeout_s)

        previous = ls.inflight.get(uri)
        if previous is not None and not previous.call.done():
            if previous.reusable and previous.extended_by(context.offset, context.prefix):
                # The user only typed on: the suggestion in flight may still fit. Let it finish
                # (no tokens thrown away) and answer from it by type-ahead if it does.
                ls.reused_count += 1
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(previous.call)
                await asyncio.sleep(0)  # let the earlier request record its suggestion first
                hit = ls.typeahead.lookup(uri, context.offset, context.prefix)
                if hit is not None:
                    return _items(params.position, hit.suggestion_id, hit.remaining)
            else:
                # A newer request for the same document supersedes this one: its RPC is
                # cancelled, which aborts the engine request, and it answers with nothing.
                previous.call.cancel()
                ls.superseded_count += 1
        call = asyncio.ensure_future(ask_serving())
        flight = InFlight(
            call,
            context.offset,
            context.prefix[-ANCHOR_CHARS:],
            single_line=request.mode == pb.COMPLETION_MODE_SINGLE_LINE,
        )
        ls.inflight[uri] = flight
        try:
            completion = await call
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the client cancelled this request itself ($/cancelRequest)
            return _EMPTY
        finally:
            current_flight = ls.inflight.get(uri)
            if current_flight is not None and current_flight.call is call:
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


# Typing more than this while a request is in flight is a new context, not type-ahead.
_MAX_REUSE_CHARS = 16


@dataclass
class InFlight:
    """The serving call in flight for a document, and where its cursor was."""

    call: asyncio.Future[Completion | None]
    offset: int
    anchor: str
    # Single-line requests are short enough to wait for; a multi-line one could keep the
    # user waiting for seconds, so newer keystrokes supersede it instead.
    single_line: bool = True
    # True once the debounce is over and serving was asked (tokens are being spent).
    asked: bool = False

    @property
    def reusable(self) -> bool:
        return self.asked and self.single_line

    def extended_by(self, offset: int, prefix: str) -> bool:
        typed = typed_since(self.offset, self.anchor, offset, prefix)
        return typed is not None and len(typed) <= _MAX_REUSE_CHARS


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
