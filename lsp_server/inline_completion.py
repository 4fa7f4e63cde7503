"""textDocument/inlineCompletion (LSP 3.18), backed by serving's Complete RPC."""

from __future__ import annotations

import hashlib
import logging
import time
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.acceptance import ACCEPT_COMMAND
from lsp_server.documents import (
    CursorContext,
    InvalidPositionError,
    UnusableDocumentError,
    cursor_context,
)
from lsp_server.server import QuillLanguageServer
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

_SCOPE_OPENERS = (":", "{", "(", "[")
_EMPTY = types.InlineCompletionList(items=[])


def choose_mode(setting: str, context: CursorContext) -> pb.CompletionMode:
    """Multi-line only where a block starts: at the end of a line that opens a scope, or on a
    blank line. Everywhere else one line (CodeCompose's rule; tree-sitter refines it later)."""
    if setting == "single":
        return pb.COMPLETION_MODE_SINGLE_LINE
    if setting == "multi":
        return pb.COMPLETION_MODE_MULTI_LINE
    at_line_end = not context.line_after.strip()
    before = context.line_before.rstrip()
    if at_line_end and (not before or before.endswith(_SCOPE_OPENERS)):
        return pb.COMPLETION_MODE_MULTI_LINE
    return pb.COMPLETION_MODE_SINGLE_LINE


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

        request = pb.CompleteRequest(
            workspace_id=workspace_id(ls),
            file_path=relative_path(ls, uri),
            language=document.language_id or "",
            prefix=context.prefix,
            suffix=context.suffix,
            cursor=pb.Position(line=params.position.line, character=params.position.character),
            mode=choose_mode(settings.completion_mode, context),
            limits=pb.CompletionLimits(max_tokens=settings.max_tokens),
        )
        started = time.perf_counter()
        completion = await ls.serving_client().complete(request, settings.request_timeout_s)
        if completion is None or not completion.text:
            return _EMPTY
        ls.shown_count += 1
        ls.telemetry.returned(
            completion.done.suggestion_id,
            uri,
            completion.text,
            document.language_id or "",
            time.perf_counter() - started,
        )
        item = types.InlineCompletionItem(
            insert_text=completion.text,
            range=types.Range(start=params.position, end=params.position),
            command=types.Command(
                title="Accept Quill suggestion",
                command=ACCEPT_COMMAND,
                arguments=[completion.done.suggestion_id, len(completion.text)],
            ),
        )
        return types.InlineCompletionList(items=[item])
