"""`quill bench repair-engine`: how fast and how faithful the Jedi completion engine is.

Guided repair prunes a token whenever the engine says nothing known can be typed there, so the
engine must (1) answer well within its deadline and (2) never reject code that is right. This
benchmark replays the canonical solutions of HumanEval's single-line infilling tasks as if a
decoder were writing the missing line: for every identifier on that line it asks for the
continuations after the identifier's first character and after the whole identifier, with the
rest of the file in place, exactly as `run_repair` does for serving. It reports the latency per
query (the first, cold query separately), how often the right identifier was rejected (false
infeasible), how often the engine said "anything goes", and how often the finished, correct line
was reported to have unresolved names. The call checks are replayed the same way: after every
`)` that closes a call on the canonical line, the engine is asked whether the calls so far fit
their signatures; any problem it reports on correct code is a false rejection.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
import tokenize
from pathlib import Path
from typing import Any

from quill_cli.bench.quality import SETS, default_data_dir, load_tasks
from quill_cli.bench.report import machine_info, summarize_ms, write_json


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser(
        "repair-engine", help="Jedi completion engine on HumanEval: latency and false rejections"
    )
    p.add_argument("--limit", type=int, default=None, help="tasks (sampled with --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=None, help="humaneval-infilling folder")
    p.add_argument("--deadline", type=float, default=2.0, help="engine deadline per query (s)")
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def identifiers(line: str) -> list[tuple[int, str]]:
    """(column, name) of every NAME token on a line of code, keywords included."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line.strip("\n") + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return [(t.start[1], t.string) for t in tokens if t.type == tokenize.NAME]


def call_ends(line: str) -> list[int]:
    """Where each call on a line closes (the index after its `)`), as the decoder asks."""
    from lsp_server.repair.calls import calls_in

    return sorted({call.end for call in calls_in(line)})


def accepts(continuations: list[str] | None, rest: str) -> bool:
    """Whether an answer lets the decoder go on writing `rest` (None: unavailable, accepted)."""
    return continuations is None or continuations == [""] or rest in continuations


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from lsp_server.repair.client import place_patch
    from lsp_server.repair.jedi_oracle import JediOracle

    filename, _ = SETS["single_line"]
    tasks = load_tasks((args.data or default_data_dir()) / filename, args.limit, args.seed)
    engine = JediOracle(path=Path.cwd() / "humaneval_task.py")
    latencies: list[float] = []
    cold_s = None
    queries = rejected = anything = unavailable = 0
    unresolved_lines = lines = 0
    rejections: list[dict[str, Any]] = []
    call_latencies: list[float] = []
    call_queries = call_rejected = call_unavailable = 0
    call_rejections: list[dict[str, Any]] = []
    try:
        for task in tasks:
            region = task.prompt.count("\n")
            text = task.prompt + task.canonical + task.suffix
            file_lines = text.split("\n")
            line = file_lines[region]
            for column, name in identifiers(line):
                for typed in sorted({1, len(name)}):
                    patch = line[: column + typed]
                    patched, at_line, at_column = place_patch(file_lines, region, region, patch)
                    started = time.perf_counter()
                    answer = await engine.continuations(patched, at_line, at_column, args.deadline)
                    elapsed = time.perf_counter() - started
                    if cold_s is None:
                        cold_s = elapsed
                    else:
                        latencies.append(elapsed)
                    queries += 1
                    unavailable += answer is None
                    anything += answer == [""]
                    if not accepts(answer, name[typed:]):
                        rejected += 1
                        rejections.append(
                            {"task": task.task_id, "line": line.strip(), "typed": name[:typed],
                             "answer": answer[:8]}  # type: ignore[index]
                        )  # fmt: skip
            for end in call_ends(line):
                patch = line[:end]
                patched, _, _ = place_patch(file_lines, region, region, patch)
                started = time.perf_counter()
                problems = await engine.call_problems(patched, region, patch, args.deadline)
                call_latencies.append(time.perf_counter() - started)
                call_queries += 1
                call_unavailable += problems is None
                if problems:
                    call_rejected += 1
                    call_rejections.append(
                        {"task": task.task_id, "line": line.strip(), "problems": problems}
                    )
            lines += 1
            names = await engine.unresolved_names(text, region, region, args.deadline * 5)
            unresolved_lines += bool(names)
    finally:
        engine.close()
    figures = {
        "benchmark": "repair-engine",
        "engine": "jedi",
        "tasks": len(tasks),
        "queries": queries,
        "cold_first_query_ms": round((cold_s or 0.0) * 1e3, 1),
        "latency": summarize_ms(latencies),
        "max_ms": round(max(latencies, default=0.0) * 1e3, 1),
        "over_deadline": unavailable,
        "false_infeasible_rate": round(rejected / max(queries, 1), 4),
        "anything_goes_rate": round(anything / max(queries, 1), 4),
        "correct_lines_with_unresolved_names": unresolved_lines,
        "call_queries": call_queries,
        "call_false_rejection_rate": round(call_rejected / max(call_queries, 1), 4),
        "call_latency": summarize_ms(call_latencies),
        "call_over_deadline": call_unavailable,
        "call_rejections": call_rejections[:20],
        # Every check that could prune the right code: names and calls together.
        "false_rejection_rate": round(
            (rejected + call_rejected) / max(queries + call_queries, 1), 4
        ),
        "lines": lines,
        "rejections": rejections[:20],
        "deadline_s": args.deadline,
        "machine": machine_info(),
    }
    write_json(args.json, figures)
    return 0
