"""The Complete RPC: validate, build the prompt, stream from the engine, post-process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from quill.attribution import context_label
from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.config import CompletionConfig
from serving.editor_context import validate_snippets
from serving.engine.base import Engine, GenerationRequest
from serving.errors import InvalidRequestError
from serving.events import new_record
from serving.fim import FimTemplate
from serving.postprocess import (
    BlockCutter,
    current_line_suffix,
    finish_single_line,
    split_blank_line,
    visible_text,
)
from serving.prompt import prompt_token_budget
from serving.retrieval_context import PromptRetriever
from serving.suggestions import SuggestionRegistry

if TYPE_CHECKING:
    from serving.api_search.service import ApiTools
    from serving.api_search.tools import ToolSession

logger = logging.getLogger(__name__)

# Single-line suggestions are what a typing person waits for; multi-line ones may queue.
_SINGLE_LINE_PRIORITY = 0
_MULTI_LINE_PRIORITY = 1

_MODE_NAMES = {pb.COMPLETION_MODE_SINGLE_LINE: "single", pb.COMPLETION_MODE_MULTI_LINE: "multi"}


@dataclass
class _Prompt:
    """What render_prompt decided: the engine request and what the final message reports."""

    mode: pb.CompletionMode  # never unspecified
    # What split_blank_line cut off the prompt's end (the model writes it again).
    cut: str
    generation: GenerationRequest
    context_sources: list[pb.ContextSource]
    tools: ToolSession | None
    tenant: str  # the caller's (serving/auth.py): its workspace and suggestions only

    @property
    def multi(self) -> bool:
        return self.mode == pb.COMPLETION_MODE_MULTI_LINE

    @property
    def mode_name(self) -> str:
        return _MODE_NAMES[self.mode]

    @property
    def context(self) -> str:
        """The kinds of context in the prompt, as the bounded attribution label."""
        return context_label(self.context_sources, self.tools.tool_calls if self.tools else [])


@dataclass
class _Streamed:
    """What stream_and_cut produced, for post-processing and accounting."""

    raw: str = ""  # the visible text, relative to the cursor, cut at the line or block end
    tokens: int = 0
    finish_reason: str = "length"
    first_output: float | None = None
    queue_wait_s: float | None = None


def _validate(request: pb.CompleteRequest) -> None:
    # Sizes were checked at the edge (serving/request_limits.py); here, what the values mean.
    if request.mode not in (pb.COMPLETION_MODE_UNSPECIFIED, *_MODE_NAMES):
        raise InvalidRequestError(f"unknown completion mode {request.mode}")
    if not 0.0 <= request.limits.temperature <= 2.0:
        raise InvalidRequestError(f"temperature {request.limits.temperature} is outside [0, 2]")
    if "\x00" in request.prefix or "\x00" in request.suffix:
        raise InvalidRequestError(
            "the document contains NUL characters; binary files are not completed"
        )
    validate_snippets(request.context.snippets)


class CompletionService:
    def __init__(
        self,
        engine: Engine,
        config: CompletionConfig,
        registry: SuggestionRegistry,
        template: FimTemplate,
        *,
        workspaces: PromptRetriever | None = None,
        api_tools: ApiTools | None = None,
    ) -> None:
        self._engine = engine
        self._config = config
        self._registry = registry
        self._template = template
        # Repository retrieval (serving/retrieval_context.py); None: prompts without it.
        self._workspaces = workspaces
        # API search inside generation (serving/api_search/tools.py); None: plain generation.
        self._api_tools = api_tools

    async def complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext, tenant: str
    ) -> AsyncIterator[pb.CompleteResponse]:
        """`tenant`: the caller (serving/auth.py); its workspace and suggestions only."""
        started = time.perf_counter()
        _validate(request)
        suggestion_id = uuid.uuid4().hex
        prompt = await self._render_prompt(request, suggestion_id, tenant)
        block = BlockCutter(request.prefix, request.suffix, request.language)
        prompt_built = time.perf_counter()
        streamed = _Streamed()
        deltas = self._stream_and_cut(request, prompt, block, suggestion_id, started, streamed)
        # Closing this generator (the client went away) closes the inner one at once, which
        # closes the engine stream and so aborts the engine request.
        async with contextlib.aclosing(deltas):
            async for delta in deltas:
                yield delta
        decoded = time.perf_counter()
        text = (
            block.finish(streamed.raw)
            if prompt.multi
            else finish_single_line(streamed.raw, current_line_suffix(request.suffix))
        )
        if len(text) < len(streamed.raw.rstrip()) and streamed.finish_reason != "truncated":
            streamed.finish_reason = "truncated"
        done = time.perf_counter()
        self._register(suggestion_id, prompt, request.language, text)
        timings = _account_stages(
            started, prompt_built, streamed.first_output or decoded, decoded, done, streamed
        )
        logger.debug(
            "completion %s: %d tokens, %s", suggestion_id, streamed.tokens, streamed.finish_reason
        )
        yield self._final_message(suggestion_id, text, prompt, streamed, timings)

    async def _render_prompt(
        self, request: pb.CompleteRequest, suggestion_id: str, tenant: str
    ) -> _Prompt:
        """The engine request: mode, token budget, retrieved and API context, FIM prompt."""
        multi = request.mode == pb.COMPLETION_MODE_MULTI_LINE
        mode = pb.COMPLETION_MODE_MULTI_LINE if multi else pb.COMPLETION_MODE_SINGLE_LINE
        max_tokens = request.limits.max_tokens or (
            self._config.multi_line_max_tokens if multi else self._config.single_line_max_tokens
        )
        budget = prompt_token_budget(
            self._engine.max_model_len, max_tokens, self._config.max_prompt_tokens
        )
        prompt_prefix, cut = split_blank_line(request.prefix)
        # The engine stops single-line requests at a newline, unless the prompt was cut before
        # the newline that starts the cursor's line: then stream_and_cut ends the line itself.
        stop_in_engine = not multi and not cut.startswith("\n")
        context_sources: list[pb.ContextSource] = []
        preamble: list[int] = []
        if self._workspaces is not None:
            rendered = await self._workspaces.context_for(
                tenant, request, self._engine.encode, budget
            )
            preamble = self._engine.encode(rendered.text) if rendered.text else []
            context_sources = rendered.sources
        tools = self._api_tools.session(tenant, request, self._engine) if self._api_tools else None
        if tools is not None:
            api = await tools.prompt_context(request.language, self._engine.encode, budget // 4)
            preamble = (self._engine.encode(api.text) if api.text else []) + preamble
            context_sources = [*context_sources, *api.sources]
        prompt_ids, _ = self._template.token_ids(
            prompt_prefix, request.suffix, self._engine.encode, budget, preamble=preamble
        )
        generation = GenerationRequest(
            request_id=suggestion_id,
            prompt_token_ids=prompt_ids,
            max_tokens=max_tokens,
            temperature=request.limits.temperature,
            stop=(*self._template.stop, "\n") if stop_in_engine else self._template.stop,
            priority=_MULTI_LINE_PRIORITY if multi else _SINGLE_LINE_PRIORITY,
        )
        return _Prompt(mode, cut, generation, context_sources, tools, tenant)

    async def _stream_and_cut(
        self,
        request: pb.CompleteRequest,
        prompt: _Prompt,
        block: BlockCutter,
        suggestion_id: str,
        started: float,
        streamed: _Streamed,
    ) -> AsyncGenerator[pb.CompleteResponse, None]:
        """Generate, and yield the text as it becomes final; stop the engine as soon as the
        line (single-line) or the block (multi-line) is complete. Fills `streamed`."""
        multi = prompt.multi
        generated = ""  # model output, relative to the prompt's end
        emitted = 0
        line_done = False
        outcome = "error"
        stream = (prompt.tools or self._engine).generate(prompt.generation)
        try:
            async for output in stream:
                if streamed.first_output is None:
                    streamed.first_output = time.perf_counter()
                    metrics.TIME_TO_FIRST_TOKEN.labels(prompt.mode_name).observe(
                        streamed.first_output - started
                    )
                streamed.tokens += output.new_token_count
                generated += output.text_delta
                if streamed.queue_wait_s is None and output.queue_wait_s is not None:
                    streamed.queue_wait_s = output.queue_wait_s
                seen, give_up = visible_text(generated, prompt.cut)
                if give_up:
                    streamed.finish_reason = "truncated"
                    metrics.ENGINE_ABORTS.labels("block_end").inc()
                    break
                if seen is None:
                    continue
                raw = seen
                if multi:
                    end = block.end(raw)
                    if end is not None:
                        # The block is complete: stop generating (closing the stream aborts it).
                        streamed.raw = raw[:end]
                        streamed.finish_reason = "truncated"
                        metrics.ENGINE_ABORTS.labels("block_end").inc()
                        break
                    # Lines may still be cut, so only whole lines go out early.
                    ready = raw.rfind("\n") + 1
                else:
                    newline = raw.find("\n")
                    line_done = newline >= 0
                    if line_done:
                        raw = raw[:newline]
                    ready = len(raw)
                streamed.raw = raw
                if ready > emitted:
                    if multi and not emitted:
                        # Shown before generation ends (the first line, early): acceptance
                        # events may come for it before the final text is known.
                        self._registry.add(
                            suggestion_id,
                            new_record(
                                prompt.tenant,
                                request.language,
                                prompt.mode_name,
                                ready,
                                prompt.context,
                            ),
                        )
                    yield pb.CompleteResponse(
                        delta=pb.TextDelta(
                            text=raw[emitted:ready],
                            suggestion_id=suggestion_id,
                            completion_tokens=streamed.tokens,
                        )
                    )
                    emitted = ready
                if not multi and line_done:
                    streamed.finish_reason = "stop"
                    if not output.finished:
                        # The line is complete: stop generating (closing the stream aborts it).
                        metrics.ENGINE_ABORTS.labels("line_end").inc()
                        break
                if output.finished:
                    streamed.finish_reason = output.finish_reason or "stop"
            outcome = "ok"
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            _account_generation(prompt, streamed.tokens, outcome)

    def _register(self, suggestion_id: str, prompt: _Prompt, language: str, text: str) -> None:
        """Record the suggestion (or its final length and context), so editors' events can
        name it."""
        registered = self._registry.get(suggestion_id, prompt.tenant)
        if registered is not None:
            registered.length = len(text)
            registered.context = prompt.context
        elif text:
            record = new_record(
                prompt.tenant, language, prompt.mode_name, len(text), prompt.context
            )
            self._registry.add(suggestion_id, record)

    def _final_message(
        self,
        suggestion_id: str,
        text: str,
        prompt: _Prompt,
        streamed: _Streamed,
        timings: pb.StageTimings,
    ) -> pb.CompleteResponse:
        return pb.CompleteResponse(
            done=pb.CompletionDone(
                suggestion_id=suggestion_id,
                text=text,
                prompt_tokens=len(prompt.generation.prompt_token_ids),
                completion_tokens=streamed.tokens,
                finish_reason=streamed.finish_reason,
                model=self._engine.model_name,
                mode=prompt.mode,
                context_sources=prompt.context_sources,
                tool_calls=prompt.tools.tool_calls if prompt.tools is not None else [],
                timings=timings,
            )
        )


def _account_generation(prompt: _Prompt, tokens: int, outcome: str) -> None:
    """Token and outcome counters of one generation, however it ended."""
    metrics.COMPLETION_TOKENS.inc(tokens)
    metrics.PROMPT_TOKENS.inc(len(prompt.generation.prompt_token_ids))
    if outcome == "cancelled":
        metrics.ENGINE_ABORTS.labels("client_cancelled").inc()
        metrics.WASTED_TOKENS.inc(tokens)
    metrics.COMPLETIONS.labels(prompt.mode_name, outcome).inc()


def _account_stages(
    started: float,
    prompt_built: float,
    first: float,
    decoded: float,
    done: float,
    streamed: _Streamed,
) -> pb.StageTimings:
    """Observe each stage's duration; returns them for the final message."""
    if streamed.queue_wait_s is not None:
        metrics.STAGE_DURATION.labels("queue_wait").observe(streamed.queue_wait_s)
    for stage, seconds in (
        ("prompt_build", prompt_built - started),
        ("time_to_first_token", first - prompt_built),
        ("decode", decoded - first),
        ("postprocess", done - decoded),
        ("total", done - started),
    ):
        metrics.STAGE_DURATION.labels(stage).observe(seconds)
    return pb.StageTimings(
        prompt_build_ms=(prompt_built - started) * 1e3,
        time_to_first_token_ms=(first - prompt_built) * 1e3,
        decode_ms=(decoded - first) * 1e3,
        postprocess_ms=(done - decoded) * 1e3,
        total_ms=(done - started) * 1e3,
        queue_wait_ms=(streamed.queue_wait_s or 0.0) * 1e3,
    )
