"""What serving needs from a text-generation engine, independent of vLLM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: Sequence[int]
    max_tokens: int
    temperature: float = 0.0
    stop: Sequence[str] = field(default_factory=tuple)
    # Benchmarks pin the number of generated tokens; users never set this.
    ignore_eos: bool = False
    seed: int | None = None
    # Lower runs first when the engine schedules by priority (single-line before multi-line).
    priority: int = 0
    # How many top alternatives (with log-probabilities) to return per generated token; None
    # returns none. Guided decoders use them to pick the next feasible token without a new call.
    logprobs: int | None = None
    # Added to the logits of these token ids at every step (-100 bans a token in practice).
    logit_bias: Mapping[int, float] | None = None
    # When set, only these token ids may be generated (constrained decoding).
    allowed_token_ids: Sequence[int] | None = None


@dataclass(frozen=True)
class EngineOutput:
    """One streamed step: the new text since the previous step."""

    text_delta: str
    new_token_count: int
    finished: bool
    # "stop" or "length" once finished, else None.
    finish_reason: str | None = None
    # Seconds the request waited in the engine's queue before it was scheduled, once known.
    queue_wait_s: float | None = None
    # The new tokens of this step, and, when the request asked for logprobs, for each of them
    # the top alternatives {token id: log-probability} including the token chosen.
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[Mapping[int, float], ...] = ()


class Engine(Protocol):
    """A streaming text generator.

    Closing the iterator returned by `generate` before it finishes must abort the request in the
    engine: no tokens may be generated for a request nobody waits for.
    """

    @property
    def model_name(self) -> str: ...

    @property
    def max_model_len(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of `token_ids`, without special tokens."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]: ...

    async def check_health(self) -> None:
        """Raise if the engine can no longer serve."""
        ...

    def shutdown(self) -> None:
        """Stop the engine and every process it started. Idempotent."""
        ...
