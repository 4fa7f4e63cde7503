"""A SIMULATED engine, for tests and benchmarks only, never for production: it runs no model.

`quill serve --engine simulated[:ttft_ms=..,tpot_ms=..,max_seqs=..]` puts it under the real
serving process in place of vLLM, so benchmarks can see what the layers above the engine (gRPC,
prompt building, retrieval, post-processing, the language server's policies) do at a GPU's pace,
which these CPU machines cannot reach with a real model. Its answers are labelled: the model name
every CompletionDone carries starts with "simulated:".

Pace: the first token comes `ttft_ms` after a request starts running, then one token every
`tpot_ms`, in steps shared by every running request (one step yields one token for each, as a
batched decoding step of vLLM does); at most `max_seqs` requests run at once and the rest wait,
which serving sees as queue wait. The defaults are a ~1.5B code model on one data-centre GPU, from
published vLLM figures cited in docs/benchmarks.md ("Load").

Text: the continuation of the prompt that the prompt itself suggests, as prompt-lookup decoding
proposes it: the tokens that followed the last earlier occurrence of the prompt's final tokens.
So the text looks like the code around the cursor, has lines and indentation, and ends where a
model's output would: at a stop string or at `max_tokens`. Tokens are the real model's (its
tokenizer), so prompt budgets and token counts are those of the real model.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from serving.engine.base import EngineOutput, GenerationRequest
from serving.engine.tokens import TokenizerBacked

logger = logging.getLogger(__name__)

_DEFAULT_MAX_MODEL_LEN = 8192
# The longest run of final prompt tokens looked up earlier in the prompt.
_LOOKUP_TOKENS = 3


@dataclass(frozen=True)
class SimulatedPace:
    """How fast the simulated engine generates (see docs/benchmarks.md for the sources)."""

    # From a request starting to run to its first token (prefill of a ~2k-token prompt).
    ttft_ms: float = 40.0
    # Between two tokens of a request (one decoding step).
    tpot_ms: float = 6.0
    # Requests generating at once; more wait for a free place.
    max_seqs: int = 256

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimulatedPace:
        """The pace from `key=value` options; ValueError naming what is wrong."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"unknown simulated-engine setting {', '.join(unknown)}; known: {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for name, raw in options.items():
            kind = int if name == "max_seqs" else float
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
                raise ValueError(f"simulated-engine setting {name} must be a number above 0")
            values[name] = kind(raw)
        return cls(**values)


class StepClock:
    """One engine step every `period_s` while requests run; a step wakes every request waiting
    for it, as one batched decoding step yields a token for each running request."""

    def __init__(self, period_s: float) -> None:
        self._period_s = period_s
        self._next: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.running = 0

    async def step(self) -> None:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        # Shielded: one request going away must not cancel the step for the others.
        await asyncio.shield(self._next)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self._period_s
        while self.running:
            await asyncio.sleep(max(0.0, due - loop.time()))
            # A late step (a busy event loop) is not made up for with a burst.
            due = max(due + self._period_s, loop.time())
            step, self._next = self._next, None
            if step is not None and not step.done():
                step.set_result(None)


def prompt_lookup(prompt: Sequence[int], filler: Sequence[int]) -> Iterator[int]:
    """Tokens continuing `prompt` the way the prompt itself suggests: after the last earlier
    occurrence of its final tokens (the longest run of up to `_LOOKUP_TOKENS` found; when even
    the final token is new, of the tokens before it), copied on from there; `filler` over and
    over when nothing repeats at all."""
    ids = list(prompt)
    position = _lookup(ids)
    if position is None:
        while True:
            yield from filler
    while True:  # copying may run into its own output: go round the prompt
        yield ids[position % len(ids)]
        position += 1


def _lookup(ids: list[int]) -> int | None:
    for end in range(len(ids), max(1, len(ids) - _LOOKUP_TOKENS * 4), -1):
        for size in range(min(_LOOKUP_TOKENS, end - 1), 0, -1):
            tail = ids[end - size : end]
            for start in range(end - size - 1, -1, -1):
                if ids[start] == tail[0] and ids[start : start + size] == tail:
                    return start + size
    return None


class SimulatedEngine(TokenizerBacked):
    """Implements serving's Engine protocol (serving/engine/base.py) without a model."""

    def __init__(
        self, tokenizer: Any, model_name: str, max_model_len: int, pace: SimulatedPace
    ) -> None:
        super().__init__(tokenizer, model_name, max_model_len)
        self.pace = pace
        self._clock = StepClock(pace.tpot_ms / 1e3)
        self._places: asyncio.Semaphore | None = None
        self._token_text: dict[int, str] = {}
        self._filler = self.encode("    pass\n") or [0]

    @classmethod
    def start(
        cls, model: str, pace: SimulatedPace, served_model_name: str | None = None
    ) -> SimulatedEngine:
        """Load `model`'s tokenizer (a local Hugging Face folder or cached id)."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        logger.warning(
            "SIMULATED engine (tests and benchmarks only, no model runs): time to first token "
            "%.1f ms, %.1f ms per token, %d requests at once; text is copied from the prompt",
            pace.ttft_ms,
            pace.tpot_ms,
            pace.max_seqs,
        )
        name = f"simulated:{served_model_name or Path(model).name}"
        return cls(tokenizer, name, _max_model_len(model), pace)

    def _text_of(self, token: int) -> str:
        text = self._token_text.get(token)
        if text is None:
            text = self._token_text[token] = self.decode([token])
        return text

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        loop = asyncio.get_running_loop()
        if self._places is None:
            self._places = asyncio.Semaphore(self.pace.max_seqs)
        arrived = loop.time()
        async with self._places:
            self._clock.running += 1
            try:
                queue_wait_s = loop.time() - arrived
                await asyncio.sleep(self.pace.ttft_ms / 1e3)
                async for output in self._decode(request, queue_wait_s):
                    yield output
            finally:
                self._clock.running -= 1

    async def _decode(
        self, request: GenerationRequest, queue_wait_s: float
    ) -> AsyncIterator[EngineOutput]:
        tokens = prompt_lookup(request.prompt_token_ids, self._filler)
        text = ""
        for produced in range(1, request.max_tokens + 1):
            if produced > 1:
                await self._clock.step()
            token = next(tokens)
            delta = self._text_of(token)
            start = len(text)
            text += delta
            stop_at = _first_stop(text, request.stop, start)
            finished = stop_at is not None or produced == request.max_tokens
            if stop_at is not None:
                delta = text[start:stop_at]
            yield EngineOutput(
                text_delta=delta,
                new_token_count=1,
                finished=finished,
                finish_reason=("stop" if stop_at is not None else "length") if finished else None,
                queue_wait_s=queue_wait_s if produced == 1 else None,
                token_ids=(token,),
            )
            if finished:
                return

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


def _first_stop(text: str, stops: Sequence[str], new_from: int) -> int | None:
    """Where the first stop string that the newest text completes begins, if any."""
    found = [
        at
        for stop in stops
        if stop and (at := text.find(stop, max(0, new_from - len(stop) + 1))) >= 0
    ]
    return min(found) if found else None


def _max_model_len(model: str) -> int:
    try:
        config = json.loads((Path(model) / "config.json").read_text())
        return int(config.get("max_position_embeddings") or _DEFAULT_MAX_MODEL_LEN)
    except (OSError, ValueError, TypeError):
        return _DEFAULT_MAX_MODEL_LEN
