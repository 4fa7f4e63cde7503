"""The Complete RPC: validate, build the prompt, stream from the engine, post-process."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
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

logger = logging.getLogger(__name__)

# Single-line suggestions are what a typing person waits for; multi-line ones may queue.
_SINGLE_LINE_PRIORITY = 0
_MULTI_LINE_PRIORITY = 1

_MODE_NAMES = {pb.COMPLETION_MODE_SINGLE_LINE: "single", pb.COMPLETION_MODE_MULTI_LINE: "multi"}


def _validate(request: pb.CompleteRequest, config: CompletionConfig) -> None:
    if request.mode not in (pb.COMPLETION_MODE_UNSPECIFIED, *_MODE_NAMES):
        raise InvalidRequestError(f"unknown completion mode {request.mode}")
    size = len(request.prefix) + len(request.suffix)
    if size > config.max_context_chars:
        raise InvalidRequestError(
            f"prefix and suffix are {size} characters; the limit is {config.max_context_chars}"
        )
    if request.limits.max_tokens > config.max_tokens_limit:
        raise InvalidRequestError(
            f"max_tokens {request.limits.max_tokens} exceeds the limit {config.max_tokens_limit}"
        )
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
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CompleteResponse]:
        started = time.perf_counter()
        _validate(request, self._config)
        multi = request.mode == pb.COMPLETION_MODE_MULTI_LINE
        mode = pb.COMPLETION_MODE_MULTI_LINE if multi else pb.COMPLETION_MODE_SINGLE_LINE
        mode_name = _MODE_NAMES[mode]
        max_tokens = request.limits.max_tokens or (
            self._config.multi_line_max_tokens if multi else self._config.single_line_max_tokens
        )
        budget = prompt_token_budget(
            self._engine.max_model_len, max_tokens, self._config.max_prompt_tokens
        )
        prompt_prefix, cut = split_blank_line(request.prefix)
        # The engine stops single-line requests at a newline, unless the prompt was cut before
        # the newline that starts the cursor's line: then this loop ends the line itself.
        stop_in_engine = not multi and not cut.startswith("\n")
        context_sources: list[pb.ContextSource] = []
        preamble: list[int] = []
        if self._workspaces is not None:
            rendered = await self._workspaces.context_for(request, self._engine.encode, budget)
            preamble = self._engine.encode(rendered.text) if rendered.text else []
            context_sources = rendered.sources
        tools = self._api_tools.session(request, self._engine) if self._api_tools else None
        if tools is not None:
            api = await tools.prompt_context(request.language, self._engine.encode, budget // 4)
            preamble = (self._engine.encode(api.text) if api.text else []) + preamble
            context_sources = [*context_sources, *api.sources]
        prompt_ids, _ = self._template.token_ids(
            prompt_prefix, request.suffix, self._engine.encode, budget, preamble=preamble
        )
        block = BlockCutter(request.prefix, request.suffix, request.language)
        line_suffix = current_line_suffix(request.suffix)
        suggestion_id = uuid.uuid4().hex
        generation = GenerationRequest(
            request_id=suggestion_id,
            prompt_token_ids=prompt_ids,
            max_tokens=max_tokens,
            temperature=request.limits.temperature,
            stop=(*self._template.stop, "\n") if stop_in_engine else self._template.stop,
            priority=_MULTI_LINE_PRIORITY if multi else _SINGLE_LINE_PRIORITY,
        )
        prompt_built = time.perf_counter()
        first_output: float | None = None
        queue_wait_s: float | None = None
        generated = ""  # model output, relative to the prompt's end
        raw = ""  # the same, relative to the cursor
        emitted = 0
        line_done = False
        tokens = 0
        finish_reason = "length"
        outcome = "error"
        stream = (tools or self._engine).generate(generation)
        try:
            async for output in stream:
                if first_output is None:
                    first_output = time.perf_counter()
                    metrics.TIME_TO_FIRST_TOKEN.labels(mode_name).observe(first_output - started)
                tokens += output.new_token_count
                generated += output.text_delta
                if queue_wait_s is None and output.queue_wait_s is not None:
                    queue_wait_s = output.queue_wait_s
                seen, give_up = visible_text(generated, cut)
                if give_up:
                    finish_reason = "truncated"
                    metrics.ENGINE_ABORTS.labels("block_end").inc()
                    break
                if seen is None:
                    continue
                raw = seen
                if multi:
                    end = block.end(raw)
                    if end is not None:
                        # The block is complete: stop generating (closing the stream aborts it).
                        raw = raw[:end]
                        finish_reason = "truncated"
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
                if ready > emitted:
                    if multi and not emitted:
                        # Shown before generation ends (the first line, early): acceptance
                        # events may come for it before the final text is known.
                        context_kinds = context_label(
                            context_sources, tools.tool_calls if tools else []
                        )
                        self._registry.add(
                            suggestion_id,
                            new_record(request.language, mode_name, ready, context_kinds),
                        )
                    yield pb.CompleteResponse(
                        delta=pb.TextDelta(
                            text=raw[emitted:ready],
                            suggestion_id=suggestion_id,
                            completion_tokens=tokens,
                        )
                    )
                    emitted = ready
                if not multi and line_done:
                    finish_reason = "stop"
                    if not output.finished:
                        # The line is complete: stop generating (closing the stream aborts it).
                        metrics.ENGINE_ABORTS.labels("line_end").inc()
                        break
                if output.finished:
                    finish_reason = output.finish_reason or "stop"
            outcome = "ok"
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            metrics.COMPLETION_TOKENS.inc(tokens)
            metrics.PROMPT_TOKENS.inc(len(prompt_ids))
            if outcome == "cancelled":
                metrics.ENGINE_ABORTS.labels("client_cancelled").inc()
                metrics.WASTED_TOKENS.inc(tokens)
            metrics.COMPLETIONS.labels(mode_name, outcome).inc()

        decoded = time.perf_counter()
        text = block.finish(raw) if multi else finish_single_line(raw, line_suffix)
        if len(text) < len(raw.rstrip()) and finish_reason != "truncated":
            finish_reason = "truncated"
        done = time.perf_counter()
        first = first_output or decoded
        registered = self._registry.get(suggestion_id)
        context_kinds = context_label(context_sources, tools.tool_calls if tools else [])
        if registered is not None:
            registered.length = len(text)
            registered.context = context_kinds
        elif text:
            self._registry.add(
                suggestion_id, new_record(request.language, mode_name, len(text), context_kinds)
            )
        if queue_wait_s is not None:
            metrics.STAGE_DURATION.labels("queue_wait").observe(queue_wait_s)
        for stage, seconds in (
            ("prompt_build", prompt_built - started),
            ("time_to_first_token", first - prompt_built),
            ("decode", decoded - first),
            ("postprocess", done - decoded),
            ("total", done - started),
        ):
            metrics.STAGE_DURATION.labels(stage).observe(seconds)
        logger.debug("completion %s: %d tokens, %s", suggestion_id, tokens, finish_reason)
        yield pb.CompleteResponse(
            done=pb.CompletionDone(
                suggestion_id=suggestion_id,
                text=text,
                prompt_tokens=len(prompt_ids),
                completion_tokens=tokens,
                finish_reason=finish_reason,
                model=self._engine.model_name,
                mode=mode,
                context_sources=context_sources,
                tool_calls=tools.tool_calls if tools is not None else [],
                timings=pb.StageTimings(
                    prompt_build_ms=(prompt_built - started) * 1e3,
                    time_to_first_token_ms=(first - prompt_built) * 1e3,
                    decode_ms=(decoded - first) * 1e3,
                    postprocess_ms=(done - decoded) * 1e3,
                    total_ms=(done - started) * 1e3,
                    queue_wait_ms=(queue_wait_s or 0.0) * 1e3,
                ),
            )
        )
