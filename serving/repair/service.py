"""The Repair RPC: validate the request, sample patches with the guided decoder, stream them.

The bidirectional stream carries two conversations at once: serving's messages out (queries to
the client's completion engine, candidates, progress, done) through one outbox, and the client's
answers in, read by a separate task. Cancelling the call cancels the samples, which closes their
engine streams and so aborts every engine request of the repair.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import tokenize
import uuid
from collections.abc import AsyncIterator

import grpc

from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.config import RepairConfig
from serving.engine.base import Engine
from serving.errors import ClientTooSlowError, InvalidRequestError
from serving.offload import ParsePool
from serving.prompt import prompt_token_budget
from serving.repair.decoder import DecodeParams, RepairDecoder, SampleResult
from serving.repair.guide import CompletionGuide, GuideStats
from serving.repair.oracle import StreamOracle
from serving.repair.prompt import PROMPT_STYLES, Region, build_prompt
from serving.repair.validity import SyntaxCheck, syntax_error

logger = logging.getLogger(__name__)

_LAYOUT_TOKENS = frozenset(
    {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
     tokenize.ENDMARKER}
)  # fmt: skip


def validate(start: pb.RepairStart, settings: RepairConfig) -> Region:
    """The region to repair; sizes were checked at the edge (serving/request_limits.py), and
    the syntax check, which may parse the whole file, is `check_parses`."""
    text = start.text
    if not text.strip():
        raise InvalidRequestError("the file is empty; there is nothing to repair")
    if "\x00" in text:
        raise InvalidRequestError("the file contains NUL characters; binary files are not repaired")
    lines = tuple(text.split("\n"))
    first, last = start.start.line, start.end.line
    if start.insert and first != last:
        raise InvalidRequestError(
            f"an insertion goes after one line; got lines {first}-{last} (start must equal end)"
        )
    if first > last:
        raise InvalidRequestError(f"the region starts at line {first} after its end line {last}")
    if last >= len(lines):
        raise InvalidRequestError(
            f"the region ends at line {last} (zero-based) but the file has {len(lines)} lines"
        )
    if last - first + 1 > settings.max_region_lines:
        raise InvalidRequestError(
            f"the region has {last - first + 1} lines; the limit is {settings.max_region_lines}"
        )
    if not 0.0 <= start.temperature <= 2.0:
        raise InvalidRequestError(f"temperature {start.temperature} is outside [0, 2]")
    return Region.insertion_after(lines, first) if start.insert else Region(lines, first, last)


async def check_parses(region: Region, language: str, text: str, parsing: ParsePool) -> None:
    """A broken region is what repair is for; a file broken elsewhere no patch can fix."""
    if await parsing.run(len(text), syntax_error, language, text) is None:
        return
    placeholder = region.indentation + ("pass" if language == "python" else "")
    if region.opens_block and language == "python":
        placeholder = region.indentation + "if True:"
    spliced = region.splice(placeholder)
    elsewhere = await parsing.run(len(spliced), syntax_error, language, spliced)
    if elsewhere is not None:
        where = (
            f"after line {region.start}"
            if region.is_insertion
            else f"lines {region.start + 1}-{region.end + 1}"
        )
        raise InvalidRequestError(
            f"the file does not parse outside {where} ({elsewhere}); "
            "repair replaces only the region, so fix that first"
        )


class RepairService:
    def __init__(self, engine: Engine, settings: RepairConfig | None = None) -> None:
        self._engine = engine
        self._settings = settings or RepairConfig()
        if self._settings.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"unknown repair prompt style {self._settings.prompt_style!r}")
        # Syntax checks of large files, off the event loop (serving/offload.py).
        self._parsing = ParsePool()

    async def close(self) -> None:
        await self._parsing.close()

    async def repair(
        self,
        requests: AsyncIterator[pb.RepairClientMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.RepairServerMessage]:
        start = await _first_message(requests, self._settings.first_message_timeout_s)
        region = validate(start, self._settings)
        await check_parses(region, start.language or "python", start.text, self._parsing)
        mode = "unguided" if start.unguided else "guided"
        outbox: asyncio.Queue[pb.RepairServerMessage | None] = asyncio.Queue()
        oracle = StreamOracle(
            outbox.put, self._settings.query_deadline_s, self._settings.max_engine_failures
        )

        async def decode_then_close() -> None:
            try:
                await self._decode(start, region, oracle, outbox)
            finally:
                outbox.put_nowait(None)

        reader = asyncio.create_task(_read_answers(requests, oracle))
        worker = asyncio.create_task(decode_then_close())
        outcome = "cancelled"
        try:
            while (message := await outbox.get()) is not None:
                yield message
            await worker
            outcome = "ok"
        except Exception:
            outcome = "error"
            raise
        finally:
            metrics.REPAIRS.labels(mode, outcome).inc()
            for task in (worker, reader):
                task.cancel()
            oracle.close()
            await asyncio.gather(worker, reader, return_exceptions=True)

    async def _decode(
        self,
        start: pb.RepairStart,
        region: Region,
        oracle: StreamOracle,
        outbox: asyncio.Queue[pb.RepairServerMessage | None],
    ) -> None:
        settings = self._settings
        started = time.perf_counter()
        language = start.language or "python"
        budget = start.budget or settings.default_budget
        max_tokens = start.max_tokens or min(
            settings.max_tokens_limit, settings.max_tokens_per_line * region.line_count
        )
        prompt = build_prompt(
            region,
            start.failing_test_output,
            settings.prompt_style,
            self._engine.encode,
            prompt_token_budget(self._engine.max_model_len, max_tokens, settings.max_prompt_tokens),
        )
        guide = (
            None
            if start.unguided
            else CompletionGuide(oracle, language, SyntaxCheck(region, language))
        )
        decoder = RepairDecoder(
            self._engine,
            prompt,
            DecodeParams(
                request_id=f"repair-{uuid.uuid4().hex[:12]}",
                max_tokens=max_tokens,
                temperature=start.temperature or settings.default_temperature,
                seed=settings.seed,
                top_logprobs=settings.top_logprobs,
                line_count=region.line_count,
            ),
            guide,
        )
        sampling = _DistinctSampling(
            decoder, region, language, oracle, budget, settings, "unguided" if guide is None else
            "guided", outbox, self._parsing,
        )  # fmt: skip
        try:
            async with asyncio.timeout(settings.max_seconds):
                await sampling.run()
        except TimeoutError:
            sampling.stopped_by = "time"
            logger.info("repair stopped after %.0f s with %d/%d distinct candidates",
                        settings.max_seconds, sampling.sent, budget)  # fmt: skip
        finally:
            await sampling.cancel()
        stats = guide.stats if guide is not None else GuideStats()
        metrics.REPAIR_ENGINE_QUERIES.inc(stats.engine_queries)
        metrics.REPAIR_PRUNED_TOKENS.inc(stats.pruned_tokens)
        if oracle.gone and guide is not None:
            logger.info("repair fell back to unguided decoding: the completion engine failed")
        await outbox.put(
            pb.RepairServerMessage(
                done=pb.RepairDone(
                    candidates=sampling.sent,
                    engine_queries=stats.engine_queries,
                    memo_hits=stats.memo_hits,
                    trie_prunes=stats.trie_prunes,
                    pruned_tokens=stats.pruned_tokens,
                    seconds=time.perf_counter() - started,
                    model=self._engine.model_name,
                    samples=sampling.done,
                    duplicates=sampling.duplicates,
                    unparsable=sampling.unparsable,
                    given_up=sampling.given_up,
                    stopped_by=sampling.stopped_by,
                    syntax_prunes=stats.syntax_prunes,
                    call_prunes=stats.call_prunes,
                )
            )
        )


class _DistinctSampling:
    """Samples until `budget` distinct candidates that parse were sent, the sample cap is hit
    (max_samples_per_candidate per candidate wanted) or the caller's time cap cancels it.

    Samples that repeat the original region or an earlier candidate, that do not parse in the
    file, or that the decoder gave up do not count. Each round of `budget` samples after the
    first is sampled hotter, with new seeds (the sample index), to get away from the copies.
    """

    def __init__(
        self,
        decoder: RepairDecoder,
        region: Region,
        language: str,
        oracle: StreamOracle,
        budget: int,
        settings: RepairConfig,
        mode: str,
        outbox: asyncio.Queue[pb.RepairServerMessage | None],
        parsing: ParsePool,
    ) -> None:
        self._decoder = decoder
        self._parsing = parsing
        self._region = region
        self._language = language
        self._oracle = oracle
        self._budget = budget
        self._settings = settings
        self._mode = mode
        self._outbox = outbox
        self._max_samples = budget * max(settings.max_samples_per_candidate, 1)
        self._seen = {_normalized(region.original, language)}
        self._running: set[asyncio.Task[SampleResult]] = set()
        self._launched = 0
        self.sent = self.done = self.duplicates = self.unparsable = self.given_up = 0
        self.stopped_by = "budget"

    async def run(self) -> None:
        while True:
            self._launch()
            if not self._running:
                break
            finished, self._running = await asyncio.wait(
                self._running, return_when=asyncio.FIRST_COMPLETED
            )
            for task in finished:
                await self._accept(task.result())
            await self._outbox.put(
                pb.RepairServerMessage(
                    progress=pb.RepairProgress(
                        samples_done=self.done, budget=self._budget, distinct=self.sent
                    )
                )
            )
        if self.sent < self._budget:
            self.stopped_by = "samples"

    async def cancel(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _launch(self) -> None:
        """Start samples while slots are free, more are wanted and the cap allows."""
        while (
            len(self._running) < self._settings.concurrency
            and self._launched < self._max_samples
            and self.sent + len(self._running) < self._budget
        ):
            round_number = self._launched // self._budget
            temperature = min(
                self._decoder.temperature + round_number * self._settings.temperature_step,
                max(self._settings.max_temperature, self._decoder.temperature),
            )
            self._running.add(
                asyncio.create_task(self._decoder.sample(self._launched, temperature))
            )
            self._launched += 1

    async def _accept(self, result: SampleResult) -> None:
        self.done += 1
        if result.patch is None:
            self.given_up += 1
            return
        key = _normalized(result.patch, self._language)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        spliced = self._region.splice(result.patch)
        if await self._parsing.run(len(spliced), syntax_error, self._language, spliced):
            # Never shown: a patch that breaks the file is no candidate.
            self.unparsable += 1
            return
        candidate = await _candidate(result, self._oracle)
        self.sent += 1
        valid = candidate.names_resolve and not candidate.call_problems
        metrics.REPAIR_CANDIDATES.labels(self._mode, "valid" if valid else "invalid").inc()
        await self._outbox.put(pb.RepairServerMessage(candidate=candidate))


async def _candidate(result: SampleResult, oracle: StreamOracle) -> pb.RepairCandidate:
    """A patch that parses, with what the client's engine says about its names and calls."""
    assert result.patch is not None
    unresolved = await oracle.unresolved_names(result.patch)
    problems = await oracle.call_problems(result.patch)
    return pb.RepairCandidate(
        patch=result.patch,
        score=result.score,
        parses=True,
        names_resolve=unresolved == [],
        sample_index=result.index,
        call_problems=problems or [],
    )


async def _first_message(
    requests: AsyncIterator[pb.RepairClientMessage], timeout_s: float
) -> pb.RepairStart:
    """The stream's RepairStart, which must come first and within `timeout_s`: a stream that
    never sends it must not hold the call (and its slot on the server) forever."""
    try:
        async with asyncio.timeout(timeout_s):
            first = await anext(aiter(requests))
    except StopAsyncIteration:
        raise InvalidRequestError("the stream ended before a RepairStart message") from None
    except TimeoutError:
        raise ClientTooSlowError(
            f"no RepairStart within {timeout_s:g} s of the stream's start"
        ) from None
    if not first.HasField("start"):
        raise InvalidRequestError("the first message of a Repair stream must be RepairStart")
    return first.start


def _normalized(patch: str, language: str) -> str:
    """What makes two patches the same code: Python tokens without comments and layout (so
    `n!=1` equals `n != 1`); whitespace aside for other languages or text that does not
    tokenize."""
    if language == "python":
        try:
            return "\x00".join(
                token.string
                for token in tokenize.generate_tokens(io.StringIO(patch.strip() + "\n").readline)
                if token.type not in _LAYOUT_TOKENS
            )
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass
    return " ".join(patch.split())


async def _read_answers(
    requests: AsyncIterator[pb.RepairClientMessage], oracle: StreamOracle
) -> None:
    try:
        async for message in requests:
            if message.HasField("answer"):
                oracle.deliver(message.answer)
            else:
                logger.info("Repair: ignoring a second RepairStart on the same stream")
    finally:
        # The client half-closed or went away: nobody will answer further queries.
        oracle.close()
