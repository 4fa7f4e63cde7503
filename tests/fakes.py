"""A scripted engine for unit tests of the layers above the engine (never for end-to-end tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from serving.engine.base import EngineOutput, GenerationRequest


@dataclass
class ScriptedEngine:
    """Streams `chunks` one per step, `step_delay_s` apart, and records what happened."""

    chunks: list[str] = field(default_factory=lambda: ["return", " a", " +", " b"])
    step_delay_s: float = 0.0
    model_name: str = "scripted"
    max_model_len: int = 256
    requests: list[GenerationRequest] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    steps_generated: int = 0

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 50000 for c in text]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        self.requests.append(request)
        done = False
        try:
            for index, chunk in enumerate(self.chunks):
                produced = index + 1
                await asyncio.sleep(self.step_delay_s)
                self.steps_generated += 1
                stop_at = min((chunk.find(s) for s in request.stop if s in chunk), default=-1)
                if stop_at >= 0:
                    chunk = chunk[:stop_at]
                ended = stop_at >= 0 or index == len(self.chunks) - 1
                last = ended or produced >= request.max_tokens
                yield EngineOutput(
                    text_delta=chunk,
                    new_token_count=1,
                    finished=last,
                    finish_reason=("stop" if ended else "length") if last else None,
                )
                if last:
                    break
            done = True
            self.finished.append(request.request_id)
        finally:
            if not done:
                self.aborted.append(request.request_id)

    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        return None
