"""textDocument/inlineCompletion (LSP 3.18), backed by serving's Complete RPC.

A request goes through four steps, each its own function below:
1. type-ahead: the user typed what the last suggestion proposed: answer with its rest at once;
2. reuse: the call in flight is writing what the user is typing: answer from it as it streams;
3. supersede: the call in flight no longer fits: cancel it (through to an engine abort);
4. ask: start a new call (lsp_server/completion/inflight.py), after the wait the timing policy
   asks for (lsp_server/completion/timing.py), and answer with its first answer.
Every keystroke (didChange) also checks the call in flight and cancels it once it is stale.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument

from lsp_server.completion.inflight import (
    SUFFIX_HEAD_CHARS,
    CompletionRecord,
    InFlight,
    context_of,
    outcome_of,
)
from lsp_server.completion.snippets import CHARS_PER_TOKEN, OpenDocument, choose_snippets
from lsp_server.completion.timing import place_kind, wait_before_asking, worth_going_on
from lsp_server.completion.trigger import choose_mode
from lsp_server.completion.typeahead import ANCHOR_CHARS, typed_since
from lsp_server.cursor_context import (
    CursorContext,
    InvalidPositionError,
    UnusableDocumentError,
    cursor_context,
)
from lsp_server.methods import ACCEPT_COMMAND
from lsp_server.server import QuillLanguageServer
from lsp_server.serving_client import Completion
from lsp_server.state import DocumentState
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

_EMPTY = types.InlineCompletionList(items=[])
# Serving's default retrieval budget, which the editor's snippets share when the setting is 0.
_DEFAULT_CONTEXT_TOKENS = 512


def register(server: QuillLanguageServer) -> None:
    server.open_listeners.append(lambda uri: _opened(server, uri))
    server.document_listeners.append(lambda uri: _keystroke(server, uri))

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: QuillLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        uri = params.text_document.uri
        document = ls.open_document(uri)
        if document is None:
            logger.info("inline completion for a document that is not open")
            return _EMPTY
        context = _cursor(ls, document, params.position)
        if context is None:
            return _EMPTY
        request = _Request(ls, uri, document, params, context)
        answer = _from_typeahead(request)
        if answer is None:
            answer = await _reuse_in_flight(request)
        if answer is None:
            _supersede(request)
            answer = await _ask(request)
        return answer


class _Request:
    """One inline completion request and what the steps share about it."""

    def __init__(
        self,
        ls: QuillLanguageServer,
        uri: str,
        document: TextDocument,
        params: types.InlineCompletionParams,
        context: CursorContext,
    ) -> None:
        self.ls = ls
        self.uri = uri
        self.document = document
        self.position = params.position
        self.context = context
        self.language = document.language_id or ""
        self.started = time.perf_counter()
        self.state = ls.state.document(uri)
        self.state.latest_request += 1
        self.number = self.state.latest_request
        self.automatic = (
            params.context is not None
            and params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        )
        self.kind = place_kind(context.line_before)
        if self.automatic:
            # The pause after this keystroke is measured when the next one comes.
            since = self.state.keystroke_at
            now = ls.state.clock.now()
            self.state.open_pause = (self.kind, now if since is None else since)

    @property
    def superseded(self) -> bool:
        return self.state.latest_request != self.number

    def answer(
        self, suggestion_id: str, text: str, tokens: int, origin: pb.SuggestionOrigin
    ) -> types.InlineCompletionList:
        """Show `text` and remember it for type-ahead and telemetry."""
        ls = self.ls
        ls.state.counters.shown += 1
        ls.state.typeahead.remember(
            self.uri, self.context.offset, self.context.prefix, suggestion_id, text, tokens
        )
        ls.state.token_usage.shown(suggestion_id, tokens)
        return self.offer(suggestion_id, text, origin)

    def offer(
        self, suggestion_id: str, text: str, origin: pb.SuggestionOrigin
    ) -> types.InlineCompletionList:
        """The item for `text` at the cursor; telemetry and the retention checks learn how it
        was produced (`origin`, a pb.SuggestionOrigin) and where it goes."""
        ls = self.ls
        ls.telemetry.returned(
            suggestion_id,
            self.uri,
            text,
            self.language,
            time.perf_counter() - self.started,
            origin,
        )
        ls.state.retention.offered(suggestion_id, self.uri, self.context.offset, text, origin)
        return _items(self.position, suggestion_id, text)


def _cursor(
    ls: QuillLanguageServer, document: TextDocument, position: types.Position
) -> CursorContext | None:
    settings = ls.settings
    try:
        return cursor_context(
            document,
            position,
            settings.max_document_bytes,
            settings.max_prefix_chars,
            settings.max_suffix_chars,
        )
    except InvalidPositionError as error:
        raise JsonRpcInvalidParams(str(error)) from error
    except UnusableDocumentError as error:
        logger.info("no completion: %s", error)
        return None


def _from_typeahead(request: _Request) -> types.InlineCompletionList | None:
    """Step 1: the rest of the last suggestion, when the user typed its beginning."""
    previous = request.state.inflight
    # A block on screen that is still streaming knows more than type-ahead's copy of it.
    if previous is not None and previous.shown and not previous.call.done():
        return None
    context = request.context
    hit = request.ls.state.typeahead.lookup(request.uri, context.offset, context.prefix)
    if hit is None:
        return None
    request.ls.state.token_usage.shown(hit.suggestion_id, hit.tokens)
    return request.offer(hit.suggestion_id, hit.remaining, pb.SUGGESTION_ORIGIN_TYPE_AHEAD)


async def _reuse_in_flight(request: _Request) -> types.InlineCompletionList | None:
    """Step 2: the user only typed on, and the generation in flight may still fit: let it go
    on (no tokens thrown away) and answer from it while it agrees with the typing. None: go on
    to the next step."""
    previous = request.state.inflight
    if previous is None or previous.call.done() or not previous.reusable:
        return None
    context = request.context
    typed = typed_since(previous.offset, previous.anchor, context.offset, context.prefix)
    if typed is None:
        return None
    answer = await previous.answer_after(typed)
    if answer is not None:
        request.ls.state.counters.reused += 1
        text, tokens = answer
        previous.showing(len(typed) + len(text))
        origin = pb.SUGGESTION_ORIGIN_STREAMED if previous.stream else pb.SUGGESTION_ORIGIN_REUSED
        return request.answer(previous.suggestion_id, text, tokens, origin)
    if request.superseded:
        return _EMPTY  # a newer request came meanwhile: it decides
    return None


def _supersede(request: _Request) -> None:
    """Step 3: the call in flight no longer fits what is on screen: its RPC is cancelled, which
    aborts the engine request, and its request answers with nothing."""
    previous = request.state.inflight
    if previous is not None and not previous.call.done():
        previous.call.cancel()
        request.ls.state.counters.superseded += 1


async def _ask(request: _Request) -> types.InlineCompletionList:
    """Step 4: a new serving call; answer with its whole suggestion, or a streamed block's
    first line as soon as it is written."""
    ls, context = request.ls, request.context
    settings = ls.settings
    complete = pb.CompleteRequest(
        workspace_id=ls.workspace_id(),
        file_path=ls.relative_path(request.uri),
        language=request.language,
        prefix=context.prefix,
        suffix=context.suffix,
        cursor=pb.Position(line=request.position.line, character=request.position.character),
        mode=choose_mode(settings.completion_mode, request.language, context),
        limits=pb.CompletionLimits(max_tokens=settings.max_tokens),
        context=pb.ContextOptions(
            disable_retrieval=not settings.retrieval,
            retrieval_token_budget=settings.retrieval_token_budget,
            snippets=_editor_snippets(request),
        ),
    )
    multi = complete.mode == pb.COMPLETION_MODE_MULTI_LINE
    wait_s = _wait_before_asking(request, multi)
    flight = _start(request, complete, wait_s)
    try:
        answer = await flight.first_answer()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            if not flight.shown:
                flight.call.cancel()
            raise  # the client cancelled this request itself ($/cancelRequest)
        return _EMPTY  # superseded
    if answer is None:
        return _EMPTY
    text, tokens = answer
    ls.state.answer_times.record(multi, ls.state.clock.now() - flight.asked_at)
    origin: pb.SuggestionOrigin = pb.SUGGESTION_ORIGIN_FRESH
    if not flight.call.done():
        # The block goes on generating: the client is told as lines come (where it takes
        # refreshes), and the next request gets them; unless its next line would likely
        # come after the user's next keystroke: then this line is the suggestion.
        flight.showing(len(text))
        flight.first_line_s = time.perf_counter() - request.started
        ls.state.counters.early_first_lines += 1
        if not _next_line_in_time(ls, request.state, flight):
            flight.stop()
        origin = pb.SUGGESTION_ORIGIN_STREAMED
    return request.answer(flight.suggestion_id, text, tokens, origin)


def _editor_snippets(request: _Request) -> list[pb.ContextSnippet]:
    """Windows of the other open documents and recently edited regions most like the code at
    the cursor (lsp_server/completion/snippets.py), for serving to place in the prompt."""
    ls, context = request.ls, request.context
    settings = ls.settings
    if not (settings.context_open_documents or settings.context_recent_edits):
        return []
    line = request.position.line
    sent = (line - context.prefix.count("\n"), line + context.suffix.count("\n"))
    # A document holding NUL characters is binary to serving, which would refuse the whole
    # request for a snippet of it (serving/editor_context.py): it gives no context.
    documents = [
        OpenDocument(uri, document.source)
        for uri, document in ls.workspace.text_documents.items()
        if "\x00" not in document.source
    ]
    budget = (settings.retrieval_token_budget or _DEFAULT_CONTEXT_TOKENS) * CHARS_PER_TOKEN
    chosen = choose_snippets(
        context.prefix,
        request.uri,
        sent,
        documents,
        ls.state.recent_edits if settings.context_recent_edits else None,
        ls.state.windows if settings.context_open_documents else None,
        budget,
    )
    snippets = [
        pb.ContextSnippet(
            kind=snippet.kind,
            path=ls.relative_path(snippet.uri),
            start_line=snippet.start_line + 1,
            end_line=snippet.end_line + 1,
            text=snippet.text,
            score=snippet.score,
        )
        for snippet in chosen
    ]
    # Nor may a path hold one (a URI with %00).
    return [s for s in snippets if "\x00" not in s.path]


def _opened(ls: QuillLanguageServer, uri: str) -> None:
    document = ls.open_document(uri)
    if document is not None and ls.settings.context_recent_edits:
        ls.state.recent_edits.opened(uri, document.source)


def _keystroke(ls: QuillLanguageServer, uri: str) -> None:
    document = ls.open_document(uri)
    if document is None:
        return  # not open: nothing kept for it
    if ls.settings.context_recent_edits:
        ls.state.recent_edits.changed(uri, document.source)
    now = ls.state.clock.now()
    state = ls.state.document(uri)
    if state.open_pause is not None:
        kind, since = state.open_pause
        state.open_pause = None
        ls.state.pauses.record(kind, now - since)  # the pause an automatic request's answer had
    state.keystroke_at = now
    _drop_if_stale(ls, uri, state)


def _wait_before_asking(request: _Request, multi: bool) -> float:
    """Seconds a new request waits before it asks serving (a keystroke meanwhile drops it)."""
    ls = request.ls
    settings = ls.settings
    wait_s = settings.debounce_ms / 1e3
    fixed = wait_s + (settings.multi_line_delay_ms / 1e3 if multi else 0.0)
    if not request.automatic:
        return fixed
    now = ls.state.clock.now()
    keystroke = request.state.keystroke_at
    need = ls.state.answer_times.typical(multi) if settings.adaptive_timing else None
    pauses = ls.state.pauses.samples(request.kind) if need is not None else None
    if need is None or pauses is None:
        return fixed  # not enough learnt yet
    elapsed = now - (now if keystroke is None else keystroke) + wait_s
    longest = settings.max_hold_ms / 1e3 if settings.max_hold_ms else None
    extra = wait_before_asking(pauses, elapsed, need, settings.min_chance_in_time, longest)
    if extra > 0:
        ls.state.counters.held_back += 1
    logger.debug(
        "%s %s request %.2f s into a pause; answer takes %.2f s; waits %.2f s more",
        request.kind,
        "multi-line" if multi else "single-line",
        elapsed,
        need,
        extra,
    )
    return wait_s + extra


def _next_line_in_time(ls: QuillLanguageServer, state: DocumentState, flight: InFlight) -> bool:
    """Whether a block on screen should go on to its next line: likely done before the user's
    next keystroke, at the pace of its lines so far (lsp_server/completion/timing.py)."""
    settings = ls.settings
    pauses = ls.state.pauses.samples(flight.kind) if flight.automatic else None
    if not settings.adaptive_timing or pauses is None:
        return True
    now = ls.state.clock.now()
    lines = sum(1 for line in flight.text.split("\n") if line.strip())
    per_line = (now - flight.asked_at) / max(1, lines)
    keystroke = state.keystroke_at
    elapsed = now - (now if keystroke is None else keystroke)
    return worth_going_on(pauses, elapsed, per_line, settings.min_chance_in_time)


def _drop_if_stale(ls: QuillLanguageServer, uri: str, state: DocumentState) -> None:
    """A keystroke reached the document: cancel its serving call at once (through to an engine
    abort) if its suggestion no longer fits, instead of generating on until the editor's next
    request, which comes only after the editor's debounce, when the typing pauses."""
    flight = state.inflight
    if flight is None or flight.call.done():
        return
    document = ls.open_document(uri)
    typed = flight.typed_in(document.source) if document is not None else None
    # Not yet asked (a block waiting for a pause): nothing spent; the next request asks afresh.
    if flight.asked and typed is not None and flight.agrees_with(typed):
        return
    flight.call.cancel()
    ls.state.counters.superseded += 1
    ls.state.counters.cancelled_on_change += 1


def _start(request: _Request, complete: pb.CompleteRequest, wait_s: float) -> InFlight:
    ls, uri, state = request.ls, request.uri, request.state
    settings = ls.settings
    flight: InFlight

    async def ask_serving() -> Completion | None:
        if wait_s:
            await ls.state.clock.sleep(wait_s)
        flight.asked = True
        flight.asked_at = ls.state.clock.now()
        return await ls.serving_client().complete(
            complete, settings.request_timeout_s, on_delta=flight.on_delta
        )

    def grew() -> None:
        if state.inflight is not flight:
            return
        if _next_line_in_time(ls, state, flight):
            ls.refresh_inline_completion(uri)
        else:
            flight.stop()

    multi = complete.mode == pb.COMPLETION_MODE_MULTI_LINE
    flight = InFlight(
        asyncio.ensure_future(ask_serving()),
        request.context.offset,
        request.context.prefix[-ANCHOR_CHARS:],
        single_line=not multi,
        on_grow=grew,
        stream=multi and settings.stream_first_line,
        kind=request.kind,
        automatic=request.automatic,
        document_length=len(request.document.source),
        suffix_head=request.context.suffix[:SUFFIX_HEAD_CHARS],
    )
    state.inflight = flight
    flight.call.add_done_callback(lambda _: _settle(request, flight))
    return flight


def _settle(request: _Request, flight: InFlight) -> None:
    """A call ended: log what it cost, and hand a streamed block's whole text to type-ahead."""
    ls, uri, state = request.ls, request.uri, request.state
    if state.inflight is flight:
        state.inflight = None
    ls.state.completion_log.append(
        CompletionRecord(
            suggestion_id=flight.suggestion_id,
            multi_line=not flight.single_line,
            tokens=flight.tokens,
            outcome=outcome_of(flight),
            seconds=time.perf_counter() - request.started,
            place=flight.kind,
            context=context_of(flight),
        )
    )
    text = flight.final_text()
    if flight.shown and text:
        # The whole block, after its first line went out early: type-ahead answers from it.
        ls.state.typeahead.extend(uri, flight.suggestion_id, flight.offset, text, flight.tokens)
        ls.telemetry.extended(flight.suggestion_id, text)
        if flight.first_line_s:
            ls.state.streamed_blocks.append(
                (flight.first_line_s, time.perf_counter() - request.started)
            )
        if len(text.rstrip()) > flight.shown_upto:
            ls.refresh_inline_completion(uri)  # the last lines came with the end


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
