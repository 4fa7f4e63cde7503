"""The Repair RPC: validate the request, sample patches with the guided decoder, stream them.

The bidirectional stream carries two conversations at once: serving's messages out (queries to
the client's completion engine, candidates, progress, done) through one outbox, and the client's
answers in, read by a separate task. Cancelling the call cancels the samples, which closes their
engine streams and so aborts every engine request of the repair.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc

from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.config import RepairConfig
from serving.engine.base import Engine
from serving.errors import InvalidRequestError
from serving.prompt import prompt_token_budget
from serving.repair.decoder import DecodeParams, RepairDecoder, SampleResult
from serving.repair.guide import CompletionGuide, GuideStats
from serving.repair.oracle import StreamOracle
from serving.repair.prompt import PROMPT_STYLES, Region, build_prompt
from serving.repair.validity import syntax_error

logger = logging.getLogger(__name__)


def validate(start: pb.RepairStart, settings: RepairConfig) -> Region:
    """The region to repair; sizes were checked at the edge (serving/request_limits.py)."""
    text = start.text
    if not text.strip():
        raise InvalidRequestError("the file is empty; there is nothing to repair")
    if "\x00" in text:
        raise InvalidRequestError("the file contains NUL characters; binary files are not repaired")
    lines = tuple(text.split("\n"))
    first, last = start.start.line, start.end.line
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
    region = Region(lines, first, last)
    language = start.language or "python"
    if syntax_error(language, text) is not None:
        # A broken region is what repair is for; a file broken elsewhere no patch can fix.
        placeholder = region.indentation + ("pass" if language == "python" else "")
        elsewhere = syntax_error(language, region.splice(placeholder))
        if elsewhere is not None:
            raise InvalidRequestError(
                f"the file does not parse outside lines {first + 1}-{last + 1} ({elsewhere}); "
                "repair replaces only the region, so fix that first"
            )
    return region


class RepairService:
    def __init__(self, engine: Engine, settings: RepairConfig | None = None) -> None:
        self._engine = engine
        self._settings = settings or RepairConfig()
        if self._settings.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"unknown repair prompt style {self._settings.prompt_style!r}")

    async def repair(
        self,
        requests: AsyncIterator[pb.RepairClientMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.RepairServerMessage]:
        try:
            first = await anext(aiter(requests))
        except StopAsyncIteration:
            raise InvalidRequestError("the stream ended before a RepairStart message") from None
        if not first.HasField("start"):
            raise InvalidRequestError("the first message of a Repair stream must be RepairStart")
        start = first.start
        region = validate(start, self._settings)
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
        mode = "unguided" if start.unguided else "guided"
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
        guide = None if start.unguided else CompletionGuide(oracle, language)
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
        slots = asyncio.Semaphore(settings.concurrency)

        async def one(index: int) -> SampleResult:
            async with slots:
                return await decoder.sample(index)

        tasks = [asyncio.create_task(one(index)) for index in range(budget)]
        seen = {_normalized(region.original)}
        sent = done = 0
        try:
            async with asyncio.timeout(settings.max_seconds):
                for finished in asyncio.as_completed(tasks):
                    result = await finished
                    done += 1
                    candidate = await _candidate(result, region, language, oracle, seen)
                    if candidate is not None:
                        sent += 1
                        metrics.REPAIR_CANDIDATES.labels(
                            mode,
                            "valid" if candidate.parses and candidate.names_resolve else "invalid",
                        ).inc()
                        await outbox.put(pb.RepairServerMessage(candidate=candidate))
                    await outbox.put(
                        pb.RepairServerMessage(
                            progress=pb.RepairProgress(samples_done=done, budget=budget)
                        )
                    )
        except TimeoutError:
            logger.info("repair stopped after %.0f s with %d/%d samples", settings.max_seconds,
                        done, budget)  # fmt: skip
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        stats = guide.stats if guide is not None else GuideStats()
        metrics.REPAIR_ENGINE_QUERIES.inc(stats.engine_queries)
        metrics.REPAIR_PRUNED_TOKENS.inc(stats.pruned_tokens)
        if oracle.gone and guide is not None:
            logger.info("repair fell back to unguided decoding: the completion engine failed")
        await outbox.put(
            pb.RepairServerMessage(
                done=pb.RepairDone(
                    candidates=sent,
                    engine_queries=stats.engine_queries,
                    memo_hits=stats.memo_hits,
                    trie_prunes=stats.trie_prunes,
                    pruned_tokens=stats.pruned_tokens,
                    seconds=time.perf_counter() - started,
                    model=self._engine.model_name,
                )
            )
        )


async def _candidate(
    result: SampleResult,
    region: Region,
    language: str,
    oracle: StreamOracle,
    seen: set[str],
) -> pb.RepairCandidate | None:
    """The sample as a new candidate, or None (given up, the original text, or a duplicate)."""
    if result.patch is None or _normalized(result.patch) in seen:
        return None
    seen.add(_normalized(result.patch))
    parses = syntax_error(language, region.splice(result.patch)) is None
    # Only a patch that parses can have its names resolved meaningfully.
    unresolved = await oracle.unresolved_names(result.patch) if parses else None
    return pb.RepairCandidate(
        patch=result.patch,
        score=result.score,
        parses=parses,
        names_resolve=unresolved == [],
        sample_index=result.index,
    )


def _normalized(patch: str) -> str:
    return "\n".join(line.rstrip() for line in patch.strip("\n").split("\n"))


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
