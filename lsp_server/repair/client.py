"""The client side of the `Repair` RPC: open the stream, answer serving's completion queries.

Serving decodes candidate patches and, whenever a token could start or extend an identifier, asks
the completion engine (which runs here, next to the user's code) what can be typed at the end of
the patch so far. This module places the patch in the file the way the contract says, asks the
engine within a deadline, and streams the answers back while candidates arrive. The language
server's code action, `quill repair` and the repair benchmark all run repairs through
`run_repair`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from lsp_server.repair.name_oracle import NameOracle
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

# How long the engine may take per query; serving accepts the token when it cannot answer.
DEFAULT_ENGINE_DEADLINE_S = 2.0
# An engine that ignores its deadline still gets an "unavailable" answer this much later.
_DEADLINE_GRACE_S = 0.5
# How long a repair waits for an engine to get ready (engines with a `prepare` method).
ENGINE_PREPARE_TIMEOUT_S = 20.0

Callback = Callable[[Any], Any]


class RepairError(RuntimeError):
    """A repair that could not run; the message is meant for the user."""


class RepairInputError(RepairError, ValueError):
    """The file or region cannot be repaired (empty file, region outside the document...)."""


@dataclass
class RepairResult:
    candidates: list[pb.RepairCandidate] = field(default_factory=list)
    done: pb.RepairDone | None = None
    # Queries answered, and how many of those the engine could not answer in time.
    queries: int = 0
    engine_unavailable: int = 0


def patch_region(start: pb.RepairStart) -> tuple[int, int]:
    """Lines first..last a patch replaces; for an insertion after line N the empty region
    N+1..N, so the patch goes between lines N and N+1 (serving splices the same way)."""
    if start.insert:
        return start.start.line + 1, start.start.line
    return start.start.line, start.end.line


def check_region(text: str, start_line: int, end_line: int) -> None:
    """Raise RepairInputError with a message for the user unless the region can be repaired."""
    if not text.strip():
        raise RepairInputError("the file is empty: there is nothing to repair")
    if "\x00" in text:
        raise RepairInputError("the file contains NUL characters (binary content)")
    line_count = len(text.split("\n"))
    if start_line < 0 or end_line < start_line:
        raise RepairInputError(f"lines {start_line + 1}-{end_line + 1} are not a region")
    if end_line >= line_count:
        raise RepairInputError(
            f"line {end_line + 1} is past the end of the file ({line_count} lines)"
        )


def place_patch(
    lines: Sequence[str], start_line: int, end_line: int, patch: str
) -> tuple[str, int, int]:
    """The file with `patch` in place of lines start..end, and the (line, column) where it ends.

    As agreed in the contract: the lines before the region, the patch, the lines after, joined
    with newlines (serving splices finished patches the same way).
    """
    text = "\n".join([*lines[:start_line], patch, *lines[end_line + 1 :]])
    patch_lines = patch.split("\n")
    return text, start_line + len(patch_lines) - 1, len(patch_lines[-1])


async def run_repair(
    stub: Any,
    start: pb.RepairStart,
    engine: NameOracle | None,
    on_candidate: Callback | None = None,
    on_progress: Callback | None = None,
    metadata: Sequence[tuple[str, str]] = (),
    *,
    engine_deadline_s: float = DEFAULT_ENGINE_DEADLINE_S,
    timeout_s: float | None = None,
) -> RepairResult:
    """Run one repair to its end; raises RepairError (or RepairInputError) with a clear message.

    `engine` None answers every query "unavailable" (what `start.unguided` asks for anyway).
    Callbacks may be plain functions or coroutines. Cancelling the awaiting task cancels the
    call, which makes serving abort its engine requests.
    """
    check_region(start.text, start.start.line, start.end.line)
    prepare = getattr(engine, "prepare", None)
    if prepare is not None and not start.unguided:
        # Serving treats a few late answers in a row as a dead engine and stops asking; an
        # engine that is slow on its first query (Jedi) warms up before decoding starts.
        await prepare(ENGINE_PREPARE_TIMEOUT_S)
    lines = start.text.split("\n")
    first, last = patch_region(start)
    result = RepairResult()
    write_lock = asyncio.Lock()
    pending: set[asyncio.Task[None]] = set()
    call = stub.Repair(metadata=tuple(metadata), timeout=timeout_s)

    async def answer(query: pb.CompletionQuery) -> None:
        reply = await _answer(query, lines, first, last, engine, engine_deadline_s)
        result.queries += 1
        result.engine_unavailable += int(reply.unavailable)
        async with write_lock:
            await call.write(pb.RepairClientMessage(answer=reply))

    try:
        async with write_lock:
            await call.write(pb.RepairClientMessage(start=start))
        async for message in call:
            kind = message.WhichOneof("message")
            if kind == "query":
                task = asyncio.create_task(answer(message.query))
                pending.add(task)
                task.add_done_callback(pending.discard)
            elif kind == "candidate":
                result.candidates.append(message.candidate)
                await _call(on_candidate, message.candidate)
            elif kind == "progress":
                await _call(on_progress, message.progress)
            elif kind == "done":
                # Serving ends the stream after this; half-close so its reader ends too, and
                # read on to the end rather than cancel a call that finished well.
                result.done = message.done
                for task in pending:
                    task.cancel()
                async with write_lock:
                    await call.done_writing()
    except grpc.aio.AioRpcError as error:
        raise RepairError(_rpc_error_message(error, timeout_s)) from error
    finally:
        for task in pending:
            task.cancel()
        if not call.done():
            call.cancel()
    for task in pending:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.warning("answering a completion query failed: %s", task.exception())
    if result.done is None:
        raise RepairError("serving closed the repair stream before it finished")
    result.candidates.sort(key=lambda candidate: candidate_rank(candidate), reverse=True)
    return result


def candidate_rank(candidate: pb.RepairCandidate) -> tuple[bool, bool, bool, float]:
    """Valid patches first (parse, names resolve, calls fit their signatures), then those whose
    names resolve, then those that parse, then by model score."""
    valid = candidate.parses and candidate.names_resolve
    return (valid and not candidate.call_problems, valid, candidate.parses, candidate.score)


async def _answer(
    query: pb.CompletionQuery,
    lines: Sequence[str],
    start_line: int,
    end_line: int,
    engine: NameOracle | None,
    deadline_s: float,
) -> pb.CompletionAnswer:
    reply = pb.CompletionAnswer(query_id=query.query_id)
    if engine is None:
        reply.unavailable = True
        return reply
    text, line, column = place_patch(lines, start_line, end_line, query.patch_so_far)
    if query.check_calls:
        check = getattr(engine, "call_problems", None)
        if check is None:
            return reply  # an engine without signatures: no judgement
        asked = check(text, start_line, query.patch_so_far, deadline_s)
        answer_field = reply.call_problems
    elif query.resolve_names:
        asked = engine.unresolved_names(text, start_line, line, deadline_s)
        answer_field = reply.unresolved_names
    else:
        asked = engine.continuations(text, line, column, deadline_s)
        answer_field = reply.continuations
    try:
        values = await asyncio.wait_for(asked, deadline_s + _DEADLINE_GRACE_S)
        if values is None:
            reply.unavailable = True
        else:
            answer_field.extend(values)
    except TimeoutError:
        reply.unavailable = True
    except Exception as error:  # noqa: BLE001 - a crashing engine must not end the repair
        logger.warning("completion engine failed: %s: %s", type(error).__name__, error)
        reply.unavailable = True
    return reply


async def _call(callback: Callback | None, value: Any) -> None:
    if callback is None:
        return
    outcome = callback(value)
    if inspect.isawaitable(outcome):
        await outcome


def _rpc_error_message(error: grpc.aio.AioRpcError, timeout_s: float | None) -> str:
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"serving is unavailable ({details})" if details else "serving is unavailable"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the repair did not finish within {timeout_s} s"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "this serving version does not implement Repair"
    if code == grpc.StatusCode.CANCELLED:
        return "the repair was cancelled"
    return f"serving refused the repair: {details or code.name}"
