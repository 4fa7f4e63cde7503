"""Fakes for unit tests of one layer at a time (never for end-to-end tests):

- `ScriptedEngine`, `GatedEngine`, `TokenScriptedEngine`: the engine, for the layers above it
  in serving (and for the language server's tests through in-process serving);
- `ScriptedNameOracle`: the language server's name oracle, for serving's guided decoder;
- `ScriptedRepair`: a `Repair` servicer on a real in-process grpc.aio server, for the client
  side of repair (the repair client, the language server's code action, `quill repair`). It asks
  the client's name oracle the queries it is given, records the answers, then streams
  candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import keyword
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.launcher import free_port
from serving.engine.base import EngineOutput, GenerationRequest


class _AlwaysHealthy:
    async def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


@dataclass
class ScriptedEngine(_AlwaysHealthy):
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


@dataclass
class GatedEngine(ScriptedEngine):
    """A ScriptedEngine whose requests wait at `gate` before generating: a test decides when an
    answer comes. `arrived` counts requests that reached the engine."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: int = 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        self.arrived += 1
        await self.gate.wait()
        async for output in super().generate(request):
            yield output


# Next-token choices for the text so far (prompt and generated): (token text, logprob), best
# first. An empty list ends the sequence (end of text).
TokenScript = Callable[[str], list[tuple[str, float]]]


@dataclass
class TokenScriptedEngine(_AlwaysHealthy):
    """Token-level fake for decoders that use token ids, logprobs and logit bias.

    Each step picks the best scripted choice that the request's logit bias does not ban (-100)
    and reports the remaining choices as its top alternatives. Token ids come from a vocabulary
    grown on demand; `encode` matches the longest known token first.
    """

    script: TokenScript
    step_delay_s: float = 0.0
    # When set, used instead of `script`: choices may depend on the request (its temperature).
    request_script: Callable[[str, GenerationRequest], list[tuple[str, float]]] | None = None
    model_name: str = "token-scripted"
    max_model_len: int = 4096
    eos_id: int = 0
    requests: list[GenerationRequest] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    steps_generated: int = 0
    _vocab: list[str] = field(default_factory=lambda: [""])
    _ids: dict[str, int] = field(default_factory=lambda: {"": 0})
    _pattern: tuple[int, re.Pattern[str]] | None = None

    def token_id(self, token: str) -> int:
        if token not in self._ids:
            self._ids[token] = len(self._vocab)
            self._vocab.append(token)
        return self._ids[token]

    def encode(self, text: str) -> list[int]:
        return [self.token_id(token) for token in self._tokens().findall(text)]

    def _tokens(self) -> re.Pattern[str]:
        """Known tokens, longest first, else one character (rebuilt as the vocabulary grows)."""
        if self._pattern is None or self._pattern[0] != len(self._vocab):
            known = sorted((t for t in self._vocab if t), key=len, reverse=True)
            alternatives = [re.escape(t) for t in known] + ["(?s:.)"]
            self._pattern = (len(self._vocab), re.compile("|".join(alternatives)))
        return self._pattern[1]

    def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(self._vocab[t] for t in token_ids)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        self.requests.append(request)
        bias = request.logit_bias or {}
        ids = list(request.prompt_token_ids)
        done = False
        try:
            for produced in range(1, request.max_tokens + 1):
                await asyncio.sleep(self.step_delay_s)
                self.steps_generated += 1
                text = self.decode(ids)
                scripted = (
                    self.request_script(text, request)
                    if self.request_script is not None
                    else self.script(text)
                )
                choices = [(self.token_id(token), logprob) for token, logprob in scripted]
                allowed = [(t, lp) for t, lp in choices if bias.get(t, 0.0) > -100]
                token, _ = allowed[0] if allowed else (self.eos_id, 0.0)
                top = dict(allowed[: (request.logprobs or 0) + 1]) if request.logprobs else {}
                if token == self.eos_id:
                    top.setdefault(self.eos_id, 0.0)
                ids.append(token)
                ended = token == self.eos_id
                last = ended or produced >= request.max_tokens
                yield EngineOutput(
                    text_delta=self._vocab[token],
                    new_token_count=1,
                    finished=last,
                    finish_reason=("stop" if ended else "length") if last else None,
                    token_ids=(token,),
                    logprobs=(top,) if request.logprobs else (),
                )
                if last:
                    break
            done = True
        finally:
            if not done:
                self.aborted.append(request.request_id)


@dataclass
class ScriptedNameOracle:
    """A completion engine for repair tests: completes the identifier at the end of the patch
    from a flat set of known names (no scopes, no attributes), the way serving asks it."""

    names: tuple[str, ...] = ("result", "items", "total", "sum", "len")
    unavailable: bool = False
    queries: list[str] = field(default_factory=list)
    # Positional arguments each function takes, for call checks (functions not listed: any).
    arity: dict[str, int] = field(default_factory=dict)
    call_queries: list[str] = field(default_factory=list)

    async def continuations(self, patch_so_far: str) -> list[str] | None:
        self.queries.append(patch_so_far)
        if self.unavailable:
            return None
        match = re.search(r"[\w.]*$", patch_so_far)
        partial = (match.group() if match else "").rsplit(".", 1)[-1]
        return [name[len(partial) :] for name in self.names if name.startswith(partial)]

    async def unresolved_names(self, patch: str) -> list[str] | None:
        names = re.findall(r"[A-Za-z_]\w*", patch)
        return [n for n in names if n not in self.names and not keyword.iskeyword(n)]

    async def call_problems(self, patch_so_far: str) -> list[str] | None:
        """Calls `name(a, b, ...)` (no nesting) whose argument count differs from `arity`."""
        self.call_queries.append(patch_so_far)
        if self.unavailable:
            return None
        problems = []
        for name, arguments in re.findall(r"(\w+)\(([^()]*)\)", patch_so_far):
            given = len([a for a in arguments.split(",") if a.strip()])
            if name in self.arity and given != self.arity[name]:
                problems.append(f"{name}() takes {self.arity[name]} arguments, {given} given")
        return problems


@dataclass
class ScriptedRepair(quill_pb2_grpc.QuillServicer):
    # (patch_so_far, resolve_names) asked in order, each answer awaited before the next.
    queries: list[tuple[str, bool]] = field(default_factory=list)
    # Candidates sent after the queries; `candidates_from_answers` may add more.
    candidates: list[pb.RepairCandidate] = field(default_factory=list)
    candidates_from_answers: (
        Callable[[list[pb.CompletionAnswer]], list[pb.RepairCandidate]] | None
    ) = None
    # Wait this long (seconds) before the candidates; a long wait lets tests cancel.
    delay_s: float = 0.0
    # Fail the call with this status instead of answering.
    abort: tuple[grpc.StatusCode, str] | None = None
    # Close the stream without a RepairDone.
    skip_done: bool = False
    starts: list[pb.RepairStart] = field(default_factory=list)
    answers: list[pb.CompletionAnswer] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once a call has begun its `delay_s` wait (the delay it waits is fixed from then on).
    waiting: asyncio.Event = field(default_factory=asyncio.Event)

    async def SyncWorkspace(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        # Holds nothing and needs nothing: a sync answered UNIMPLEMENTED would mark serving
        # down in the language server and race the repair calls under test.
        return pb.SyncWorkspaceResponse()

    async def Repair(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
        first = await anext(request_iterator)
        self.starts.append(first.start)
        self.started.set()
        if self.abort is not None:
            await context.abort(*self.abort)
        completed = False
        try:
            for query_id, (patch, resolve) in enumerate(self.queries, start=1):
                yield pb.RepairServerMessage(
                    query=pb.CompletionQuery(
                        query_id=query_id, patch_so_far=patch, resolve_names=resolve
                    )
                )
                message = await anext(request_iterator)
                assert message.answer.query_id == query_id
                self.answers.append(message.answer)
            budget = first.start.budget or 2
            yield pb.RepairServerMessage(progress=pb.RepairProgress(samples_done=0, budget=budget))
            delay_s = self.delay_s
            self.waiting.set()
            await asyncio.sleep(delay_s)
            produced = list(self.candidates)
            if self.candidates_from_answers is not None:
                produced += self.candidates_from_answers(self.answers)
            for candidate in produced:
                yield pb.RepairServerMessage(candidate=candidate)
            yield pb.RepairServerMessage(
                progress=pb.RepairProgress(samples_done=budget, budget=budget)
            )
            if not self.skip_done:
                yield pb.RepairServerMessage(
                    done=pb.RepairDone(candidates=len(produced), engine_queries=len(self.answers))
                )
            completed = True
        finally:
            # Cancelled while awaiting (CancelledError) or while suspended at a yield (the
            # generator is closed): either way the client went away before the end.
            if not completed:
                self.cancelled.set()


@contextlib.asynccontextmanager
async def scripted_repair_serving(servicer: ScriptedRepair) -> AsyncIterator[str]:
    """A real grpc.aio server on a free loopback port serving `servicer`; yields its address."""
    server = grpc.aio.server()
    quill_pb2_grpc.add_QuillServicer_to_server(servicer, server)
    # The language server checks health before it sends anything.
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    try:
        yield address
    finally:
        await server.stop(grace=0.2)
