"""Sampling candidate patches with a completion engine in the loop, using vLLM efficiently.

One sample is not one engine round trip per token: vLLM generates freely with the top-k
alternatives of every token (logprobs), and each token is checked as it streams in. When a token
is infeasible the request is aborted and decoding resumes from the longest feasible prefix: with
the best feasible alternative from that step's top-k (sampled by probability), or, when none of
them is feasible, with one step that bans them all (logit bias) before generating freely again.
Prefix caching makes each resume cost little more than the tokens it generates. Proactive
completion (a unique continuation appended by the guide) also resumes from the longer prefix.

Unguided decoding (the baseline) runs the same loop without the guide.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from serving.engine.base import Engine, EngineOutput, GenerationRequest
from serving.repair.guide import CompletionGuide
from serving.repair.prompt import RepairPrompt

logger = logging.getLogger(__name__)

_BAN = -100.0
# Ban rounds at one position before a sample is given up (every top-k choice was infeasible).
_MAX_BAN_ROUNDS = 3


@dataclass(frozen=True)
class DecodeParams:
    request_id: str
    max_tokens: int
    temperature: float
    seed: int
    top_logprobs: int
    # The patch is finished after this many lines.
    line_count: int


@dataclass
class SampleResult:
    index: int
    # None: the sample was given up (no feasible token at some position).
    patch: str | None
    score: float
    sampled_tokens: int
    engine_requests: int


@dataclass
class _State:
    text: str  # patch so far, including the head already in the prompt
    temperature: float
    generated_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    banned: set[int] = field(default_factory=set)
    ban_rounds: int = 0
    finished: bool = False
    given_up: bool = False


class RepairDecoder:
    def __init__(
        self,
        engine: Engine,
        prompt: RepairPrompt,
        params: DecodeParams,
        guide: CompletionGuide | None,
    ) -> None:
        self._engine = engine
        self._prompt = prompt
        self._params = params
        self._guide = guide

    @property
    def temperature(self) -> float:
        return self._params.temperature

    async def sample(self, index: int, temperature: float | None = None) -> SampleResult:
        """One sample; `temperature` overrides the parameters' (later rounds of a repair that
        still lacks distinct candidates sample hotter)."""
        if temperature is None:
            temperature = self._params.temperature
        state = _State(text=self._prompt.head, temperature=temperature)
        rng = random.Random(self._params.seed * 1_000_003 + index)
        requests = 0
        # Every request adds a token or a ban; the cap only guards against an engine that ends
        # streams without either.
        max_requests = 2 * self._params.max_tokens + _MAX_BAN_ROUNDS + 2
        while not state.finished and requests < max_requests:
            if len(state.generated_ids) >= self._params.max_tokens:
                break
            requests += 1
            request = self._request(state, index, requests)
            stream = self._engine.generate(request)
            try:
                await self._consume(stream, state, rng)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        patch = None if state.given_up else _first_lines(state.text, self._params.line_count)
        score = sum(state.logprobs) / len(state.logprobs) if state.logprobs else 0.0
        return SampleResult(index, patch, score, len(state.logprobs), requests)

    def _request(self, state: _State, index: int, attempt: int) -> GenerationRequest:
        remaining = self._params.max_tokens - len(state.generated_ids)
        return GenerationRequest(
            request_id=f"{self._params.request_id}-s{index}-r{attempt}",
            prompt_token_ids=[*self._prompt.token_ids, *state.generated_ids],
            # After a ban, one step only: the ban must not outlive its position.
            max_tokens=1 if state.banned else remaining,
            temperature=state.temperature,
            seed=self._params.seed + 7919 * index + attempt,
            logprobs=self._params.top_logprobs,
            logit_bias=dict.fromkeys(state.banned, _BAN) if state.banned else None,
        )

    async def _consume(
        self, stream: AsyncIterator[EngineOutput], state: _State, rng: random.Random
    ) -> None:
        """Check tokens as they stream; return when the patch is done or decoding must resume."""
        async for output in stream:
            steps = output.logprobs or tuple({} for _ in output.token_ids)
            for token_id, top in zip(output.token_ids, steps, strict=False):
                outcome = await self._step(state, token_id, top, rng)
                if outcome != "next":
                    return
            if output.finished:
                state.finished = state.finished or output.finish_reason == "stop"
                return

    async def _step(
        self, state: _State, token_id: int, top: Mapping[int, float], rng: random.Random
    ) -> str:
        """Returns "next" (keep streaming), "resume" (abort, resume from the new prefix)
        or "done"."""
        token = self._token_text(state, token_id)
        verdict_ok, completion = await self._check(state.text, token)
        if verdict_ok:
            self._append(state, token_id, token, top.get(token_id, 0.0), completion)
            if state.finished:
                return "done"
            return "resume" if completion else "next"
        # Infeasible: the best feasible alternative of this step, by sampled order.
        state.banned.add(token_id)
        for alternative in _sampled_order(top, state.banned, state.temperature, rng):
            alt_token = self._token_text(state, alternative)
            ok, alt_completion = await self._check(state.text, alt_token)
            if ok:
                self._append(state, alternative, alt_token, top[alternative], alt_completion)
                return "done" if state.finished else "resume"
            state.banned.add(alternative)
        state.ban_rounds += 1
        if state.ban_rounds > _MAX_BAN_ROUNDS:
            state.given_up = state.finished = True
            return "done"
        return "resume"

    async def _check(self, text: str, token: str) -> tuple[bool, str]:
        if self._guide is None:
            return True, ""
        verdict = await self._guide.check(text, token)
        return verdict.feasible, verdict.completion

    def _token_text(self, state: _State, token_id: int) -> str:
        before = self._engine.decode(state.generated_ids)
        after = self._engine.decode([*state.generated_ids, token_id])
        return after[len(before) :] if after.startswith(before) else after

    def _append(
        self, state: _State, token_id: int, token: str, logprob: float, completion: str
    ) -> None:
        state.banned.clear()
        state.ban_rounds = 0
        state.logprobs.append(logprob)
        state.generated_ids.append(token_id)
        state.text += token
        if completion:
            state.text += completion
            # Re-tokenize so the model continues from natural tokens of the longer name.
            state.generated_ids = self._engine.encode(state.text[len(self._prompt.head) :])
        if state.text.count("\n") >= self._params.line_count:
            state.finished = True


def _first_lines(text: str, count: int) -> str:
    return "\n".join(text.split("\n")[:count]).rstrip()


def _sampled_order(
    top: Mapping[int, float], banned: set[int], temperature: float, rng: random.Random
) -> list[int]:
    """Alternatives in the order a sampler at `temperature` would likely draw them (Gumbel keys);
    by probability when greedy."""
    choices = [(token, logprob) for token, logprob in top.items() if token not in banned]
    if temperature <= 0:
        return [token for token, _ in sorted(choices, key=lambda c: -c[1])]
    keyed = [
        (logprob / temperature - math.log(-math.log(rng.random() or 1e-12)), token)
        for token, logprob in choices
    ]
    return [token for _, token in sorted(keyed, reverse=True)]
