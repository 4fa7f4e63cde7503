"""`quill bench repair`: guided (Repilot) vs unguided repair of planted HumanEval bugs.

Bugs come from quill_cli/bench/repair_bugs.py (deterministic for a seed). Both modes run through the
real path a user gets: a `quill serve` process with vLLM, the Repair RPC, and the language
server's repair client answering queries with Jedi. Same model, same sample budget, same seeds;
the order of the two modes alternates per bug so neither always finds the prompt in the prefix
cache. Candidates that parse run the task's tests in a sandboxed subprocess with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import time
import tokenize
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill_cli.bench.quality import default_data_dir, program_passes
from quill_cli.bench.repair_bugs import KINDS, Bug, make_bugs
from quill_cli.bench.report import machine_info, write_json

MODES = ("guided", "unguided")


@dataclass
class _ModeFigures:
    bugs: int = 0
    errors: int = 0
    candidates: int = 0
    parses: int = 0
    valid: int = 0
    plausible_patches: int = 0
    plausible: int = 0
    fixed: int = 0
    top1_plausible: int = 0
    seconds: float = 0.0
    engine_queries: int = 0
    memo_hits: int = 0
    trie_prunes: int = 0
    pruned_tokens: int = 0
    fixed_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def summary(self, budget: int) -> dict[str, Any]:
        def ratio(part: int, whole: int) -> float:
            return round(part / whole, 4) if whole else 0.0

        return {
            "bugs": self.bugs,
            "samples": self.bugs * budget,
            "errors": self.errors,
            "candidates": self.candidates,
            "valid_rate": ratio(self.valid, self.candidates),
            "parse_rate": ratio(self.parses, self.candidates),
            "valid_patches": self.valid,
            "plausible_patches": self.plausible_patches,
            "plausible": self.plausible,
            "fixed": self.fixed,
            "top1_plausible": self.top1_plausible,
            "seconds_per_patch": round(self.seconds / self.candidates, 2) if self.candidates else 0,
            "seconds_per_bug": round(self.seconds / self.bugs, 2) if self.bugs else 0,
            "engine_queries": self.engine_queries,
            "memo_hits": self.memo_hits,
            "trie_prunes": self.trie_prunes,
            "pruned_tokens": self.pruned_tokens,
            "fixed_by_kind": self.fixed_by_kind,
        }


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("repair", help="guided vs unguided repair of planted HumanEval bugs")
    p.add_argument("--limit", type=int, default=20, help="number of bugs")
    p.add_argument("--budget", type=int, default=4, help="samples per bug and mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=None, help="humaneval-infilling folder")
    p.add_argument(
        "--address", default=None, help="use this running serving instead of starting one"
    )
    p.add_argument("--model", default=None, help="model for the serving process it starts")
    p.add_argument("--serve-arg", action="append", default=[], help="extra `quill serve` argument")
    p.add_argument("--engine-deadline", type=float, default=3.0, help="seconds per Jedi query")
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _fails(bug: Bug) -> bool:
    return not program_passes(bug.program(bug.text))


async def _run(args: argparse.Namespace) -> int:
    from quill import envs
    from quill_cli.launcher import ServingProcess

    bugs = await asyncio.to_thread(
        make_bugs, args.data or default_data_dir(), args.limit, args.seed, _fails
    )
    print(f"{len(bugs)} bugs planted", file=sys.stderr)
    serving = None
    address = args.address
    if address is None:
        log = envs.cache_dir() / "bench-repair-serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        extra = (["--model", args.model] if args.model else []) + list(args.serve_arg)
        serving = ServingProcess(extra, log_path=log)
        address = serving.start().address
    try:
        figures, details = await _repair_all(bugs, address, args.budget, args.engine_deadline)
    finally:
        if serving is not None:
            serving.stop()
    summary: dict[str, Any] = {mode: figures[mode].summary(args.budget) for mode in MODES}
    guided, unguided = summary["guided"], summary["unguided"]
    summary["guided_vs_unguided"] = {
        "valid_rate_ratio": round(guided["valid_rate"] / unguided["valid_rate"], 2)
        if unguided["valid_rate"]
        else None,
        "seconds_per_patch_ratio": round(
            guided["seconds_per_patch"] / unguided["seconds_per_patch"], 2
        )
        if unguided["seconds_per_patch"]
        else None,
    }
    summary.update(
        {"bugs": len(bugs), "budget": args.budget, "seed": args.seed,
         "kinds": {k: sum(b.kind == k for b in bugs) for k in KINDS},
         "model": args.model or "smollm2-135m", "serve_args": args.serve_arg,
         "machine": machine_info(), "details": details}
    )  # fmt: skip
    write_json(args.json, summary)
    return 0


async def _repair_all(
    bugs: list[Bug], address: str, budget: int, engine_deadline_s: float
) -> tuple[dict[str, _ModeFigures], list[dict[str, Any]]]:
    from lsp_server.repair.client import RepairError, run_repair
    from lsp_server.repair.jedi_oracle import JediOracle
    from quill.channel import open_channel
    from quill.v1 import quill_pb2 as pb
    from quill.v1 import quill_pb2_grpc

    figures = {mode: _ModeFigures() for mode in MODES}
    details: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="quill-repair-bench-") as root:
        engine = JediOracle(project_root=root, path=Path(root) / "humaneval.py")
        async with open_channel(address) as channel:
            stub = quill_pb2_grpc.QuillStub(channel)
            with ThreadPoolExecutor(max_workers=2) as executor:
                for number, bug in enumerate(bugs):
                    order = MODES if number % 2 else MODES[::-1]
                    row: dict[str, Any] = {"task_id": bug.task_id, "kind": bug.kind,
                                           "buggy": bug.buggy_line.strip(),
                                           "original": bug.original_line.strip()}  # fmt: skip
                    for mode in order:
                        mode_figures = figures[mode]
                        mode_figures.bugs += 1
                        start = pb.RepairStart(
                            file_path="humaneval.py", language="python", text=bug.text,
                            start=pb.Position(line=bug.line), end=pb.Position(line=bug.line),
                            budget=budget, unguided=mode == "unguided",
                        )  # fmt: skip
                        started = time.perf_counter()
                        try:
                            result = await run_repair(
                                stub, start, engine, engine_deadline_s=engine_deadline_s,
                                timeout_s=600,
                            )  # fmt: skip
                        except RepairError as error:
                            mode_figures.errors += 1
                            row[mode] = {"error": str(error)}
                            continue
                        mode_figures.seconds += time.perf_counter() - started
                        row[mode] = await _score(
                            bug, result.candidates, result.done, mode_figures, executor, loop
                        )
                    details.append(row)
                    print(f"{number + 1}/{len(bugs)} {bug.kind}: "
                          f"{_brief(row, 'guided')} | {_brief(row, 'unguided')}",
                          file=sys.stderr)  # fmt: skip
        engine.close()
    return figures, details


async def _score(
    bug: Bug,
    candidates: list[Any],
    done: Any,
    figures: _ModeFigures,
    executor: ThreadPoolExecutor,
    loop: asyncio.AbstractEventLoop,
) -> dict[str, Any]:
    """Run the tests on every candidate that parses; count validity, plausibility, fixes."""
    outcomes = []
    for candidate in candidates:  # ranked by the client: valid first, then by score
        passed = candidate.parses and await loop.run_in_executor(
            executor, program_passes, bug.program(bug.with_line(candidate.patch))
        )
        exact = passed and _same_code(candidate.patch, bug.original_line)
        outcomes.append((candidate, passed, exact))
    figures.candidates += len(candidates)
    figures.parses += sum(c.parses for c in candidates)
    figures.valid += sum(c.parses and c.names_resolve for c in candidates)
    figures.plausible_patches += sum(passed for _, passed, _ in outcomes)
    figures.plausible += any(passed for _, passed, _ in outcomes)
    fixed = any(exact for _, _, exact in outcomes)
    figures.fixed += fixed
    figures.fixed_by_kind[bug.kind] += fixed
    figures.top1_plausible += bool(outcomes and outcomes[0][1])
    if done is not None:
        figures.engine_queries += done.engine_queries
        figures.memo_hits += done.memo_hits
        figures.trie_prunes += done.trie_prunes
        figures.pruned_tokens += done.pruned_tokens
    return {
        "patches": [
            {"patch": c.patch.strip(), "valid": c.parses and c.names_resolve, "passes": p}
            for c, p, _ in outcomes
        ],
        "fixed": fixed,
        "seconds": round(done.seconds, 2) if done is not None else None,
    }


def _same_code(patch: str, original: str) -> bool:
    """Equal token by token (whitespace and comments aside)."""

    def tokens(code: str) -> list[str] | None:
        try:
            return [
                t.string
                for t in tokenize.generate_tokens(io.StringIO(code.strip() + "\n").readline)
                if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                  tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
            ]  # fmt: skip
        except (tokenize.TokenError, SyntaxError):
            return None

    mine = tokens(patch)
    return mine is not None and mine == tokens(original)


def _brief(row: dict[str, Any], mode: str) -> str:
    outcome = row.get(mode, {})
    if "error" in outcome:
        return f"{mode}: error"
    patches = outcome.get("patches", [])
    valid = sum(p["valid"] for p in patches)
    return f"{mode}: {valid}/{len(patches)} valid, fixed={outcome.get('fixed')}"
