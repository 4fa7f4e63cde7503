"""`quill bench repair`: guided (Repilot) vs unguided repair of planted HumanEval bugs.

Bugs come from quill_cli/bench/repair_bugs.py (deterministic for a seed). Both modes run through the
real path a user gets: a `quill serve` process with vLLM, the Repair RPC, and the language
server's repair client answering queries with Jedi. Same model, same budget of distinct
candidates, same seeds; the order of the modes alternates per bug so neither always finds the
prompt in the prefix cache. Every returned candidate is checked here again (does it parse in the
file, is it distinct) and runs the task's tests in a sandboxed subprocess with a timeout.

With `--validate`, both modes run a second time with test validation as `quill repair --test`
does it (lsp_server/repair/validation.py): the task's tests run on the buggy file in a temporary
workspace, their failing output becomes the hint in the prompt, and each candidate's test run
ranks those that pass first; the modes are then `guided_tests` and `unguided_tests`.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import io
import json
import sys
import tempfile
import time
import tokenize
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill_cli.bench.quality import default_data_dir, program_passes
from quill_cli.bench.repair_bugs import KINDS, Bug, make_bugs
from quill_cli.bench.report import machine_info, write_json

MODES = ("guided", "unguided")
VALIDATED_MODES = ("guided_tests", "unguided_tests")


@dataclass(frozen=True)
class _Settings:
    budget: int
    engine_deadline_s: float
    test_timeout_s: float


def _ratios(guided: dict[str, Any], unguided: dict[str, Any]) -> dict[str, float | None]:
    def ratio(key: str) -> float | None:
        return round(guided[key] / unguided[key], 2) if unguided[key] else None

    return {
        "fixed_difference": guided["fixed"] - unguided["fixed"],
        "plausible_difference": guided["plausible"] - unguided["plausible"],
        "valid_rate_ratio": ratio("valid_rate"),
        "seconds_ratio": ratio("seconds"),
        "seconds_per_patch_ratio": ratio("seconds_per_patch"),
    }


@dataclass
class _ModeFigures:
    bugs: int = 0
    errors: int = 0
    candidates: int = 0
    # Checked here: candidates that parse in the file, and distinct ones (from each other and
    # from the buggy line, whitespace aside).
    parses: int = 0
    distinct: int = 0
    valid: int = 0
    plausible_patches: int = 0
    plausible: int = 0
    fixed: int = 0
    top1_plausible: int = 0
    top1_fixed: int = 0
    no_candidate: int = 0
    seconds: float = 0.0
    samples: int = 0
    duplicates: int = 0
    unparsable: int = 0
    given_up: int = 0
    engine_queries: int = 0
    memo_hits: int = 0
    trie_prunes: int = 0
    pruned_tokens: int = 0
    syntax_prunes: int = 0
    call_prunes: int = 0
    fixed_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def summary(self, budget: int) -> dict[str, Any]:
        def ratio(part: int, whole: int) -> float:
            return round(part / whole, 4) if whole else 0.0

        return {
            "bugs": self.bugs,
            "budget": budget,
            "errors": self.errors,
            "candidates": self.candidates,
            "distinct": self.distinct,
            "valid_rate": ratio(self.valid, self.candidates),
            "parse_rate": ratio(self.parses, self.candidates),
            "valid_patches": self.valid,
            "plausible_patches": self.plausible_patches,
            "plausible": self.plausible,
            "fixed": self.fixed,
            "top1_plausible": self.top1_plausible,
            "top1_fixed": self.top1_fixed,
            "bugs_without_candidate": self.no_candidate,
            "seconds": round(self.seconds, 1),
            "seconds_per_bug": round(self.seconds / self.bugs, 2) if self.bugs else 0,
            "seconds_per_patch": round(self.seconds / self.candidates, 2) if self.candidates else 0,
            "samples": self.samples,
            "duplicate_samples": self.duplicates,
            "unparsable_samples": self.unparsable,
            "given_up_samples": self.given_up,
            "engine_queries": self.engine_queries,
            "memo_hits": self.memo_hits,
            "trie_prunes": self.trie_prunes,
            "pruned_tokens": self.pruned_tokens,
            "syntax_prunes": self.syntax_prunes,
            "call_prunes": self.call_prunes,
            "fixed_by_kind": self.fixed_by_kind,
        }


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("repair", help="guided vs unguided repair of planted HumanEval bugs")
    p.add_argument("--limit", type=int, default=40, help="number of bugs")
    p.add_argument("--budget", type=int, default=10, help="distinct candidates per bug and mode")
    p.add_argument(
        "--validate",
        action="store_true",
        help="also run both modes with test validation (failing output as hint, ranking)",
    )
    p.add_argument("--test-timeout", type=float, default=10.0, help="seconds per test run")
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
    modes = MODES + (VALIDATED_MODES if args.validate else ())
    settings = _Settings(args.budget, args.engine_deadline, args.test_timeout)

    def summarize(figures: dict[str, _ModeFigures], details: list[dict[str, Any]]) -> Any:
        summary: dict[str, Any] = {mode: figures[mode].summary(args.budget) for mode in modes}
        summary["guided_vs_unguided"] = _ratios(summary["guided"], summary["unguided"])
        if args.validate:
            summary["guided_vs_unguided_with_tests"] = _ratios(
                summary["guided_tests"], summary["unguided_tests"]
            )
        summary.update(
            {"bugs": len(bugs), "bugs_done": len(details), "budget": args.budget,
             "seed": args.seed, "kinds": {k: sum(b.kind == k for b in bugs) for k in KINDS},
             "model": args.model or "smollm2-135m", "serve_args": args.serve_arg,
             "machine": machine_info(), "details": details}
        )  # fmt: skip
        return summary

    def checkpoint(figures: dict[str, _ModeFigures], details: list[dict[str, Any]]) -> None:
        # A long run on a shared machine may be stopped: what is done so far is on disk.
        if args.json is not None:
            args.json.write_text(json.dumps(summarize(figures, details), indent=2) + "\n")

    try:
        figures, details = await _repair_all(bugs, address, modes, settings, checkpoint)
    finally:
        if serving is not None:
            serving.stop()
    write_json(args.json, summarize(figures, details))
    return 0


async def _repair_all(
    bugs: list[Bug],
    address: str,
    modes: tuple[str, ...],
    settings: _Settings,
    checkpoint: Callable[[dict[str, _ModeFigures], list[dict[str, Any]]], None],
) -> tuple[dict[str, _ModeFigures], list[dict[str, Any]]]:
    from lsp_server.repair.jedi_oracle import JediOracle
    from quill.channel import open_channel
    from quill.v1 import quill_pb2_grpc

    figures = {mode: _ModeFigures() for mode in modes}
    details: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="quill-repair-bench-") as root:
        engine = JediOracle(project_root=root, path=Path(root) / "humaneval.py")
        async with open_channel(address) as channel:
            stub = quill_pb2_grpc.QuillStub(channel)
            with ThreadPoolExecutor(max_workers=2) as executor:
                for number, bug in enumerate(bugs):
                    order = modes if number % 2 else modes[::-1]
                    row: dict[str, Any] = {"task_id": bug.task_id, "kind": bug.kind,
                                           "buggy": bug.buggy_line.strip(),
                                           "original": bug.original_line.strip()}  # fmt: skip
                    for mode in order:
                        row[mode] = await _repair_one(
                            bug, mode, stub, engine, settings, figures[mode], executor
                        )
                    details.append(row)
                    checkpoint(figures, details)
                    print(f"{number + 1}/{len(bugs)} {bug.kind}: "
                          + " | ".join(_brief(row, mode) for mode in modes),
                          file=sys.stderr)  # fmt: skip
        engine.close()
    return figures, details


async def _repair_one(
    bug: Bug,
    mode: str,
    stub: Any,
    engine: Any,
    settings: _Settings,
    figures: _ModeFigures,
    executor: ThreadPoolExecutor,
) -> dict[str, Any]:
    """One repair of one bug in one mode (tests first and last when the mode validates)."""
    from lsp_server.repair.client import RepairError, run_repair
    from quill.v1 import quill_pb2 as pb

    figures.bugs += 1
    start = pb.RepairStart(
        file_path="humaneval.py", language="python", text=bug.text,
        start=pb.Position(line=bug.line), end=pb.Position(line=bug.line),
        budget=settings.budget, unguided=mode.startswith("unguided"),
    )  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quill-repair-bench-tests-") as folder:
        validation = _validation(bug, Path(folder), settings) if mode in VALIDATED_MODES else None
        try:
            if validation is not None:
                await validation.run_original(bug.text)
                start.failing_test_output = validation.hint
            result = await run_repair(
                stub, start, engine,
                engine_deadline_s=settings.engine_deadline_s, timeout_s=900,
            )  # fmt: skip
            candidates = list(result.candidates)
            if validation is not None:
                await validation.run_candidates(bug.text, bug.line, bug.line, candidates)
                candidates = validation.ranked(candidates)
        except RepairError as error:
            figures.errors += 1
            return {"error": str(error)}
    seconds = time.perf_counter() - started
    figures.seconds += seconds
    outcome = await _score(bug, candidates, result.done, figures, executor)
    outcome["seconds"] = round(seconds, 2)
    if validation is not None:
        outcome["tests"] = validation.summary()
    return outcome


def _validation(bug: Bug, folder: Path, settings: _Settings) -> Any:
    """The task's tests as a workspace: humaneval.py and a test file that imports it (run
    without -I: isolated mode leaves the script's folder off sys.path)."""
    from lsp_server.repair.test_runner import TestLimits, TestRunner
    from lsp_server.repair.validation import TestValidation

    (folder / "humaneval.py").write_text(bug.text)
    (folder / "test_humaneval.py").write_text(
        f"from humaneval import *\n\n{bug.test}\n\ncheck({bug.entry_point})\n"
    )
    runner = TestRunner(
        f"{sys.executable} test_humaneval.py",
        folder,
        "humaneval.py",
        TestLimits(timeout_s=settings.test_timeout_s),
    )
    return TestValidation(runner)


async def _score(
    bug: Bug,
    candidates: list[Any],
    done: Any,
    figures: _ModeFigures,
    executor: ThreadPoolExecutor,
) -> dict[str, Any]:
    """Check parsing and distinctness here, run the tests on every candidate that parses, count
    validity, plausibility and fixes (in the order given: the ranking the user sees)."""
    loop = asyncio.get_running_loop()
    outcomes = []
    seen = {_normalized(bug.buggy_line)}
    for candidate in candidates:
        parses = _parses(bug.with_line(candidate.patch))
        passed = parses and await loop.run_in_executor(
            executor, program_passes, bug.program(bug.with_line(candidate.patch))
        )
        exact = passed and _same_code(candidate.patch, bug.original_line)
        distinct = _normalized(candidate.patch) not in seen
        seen.add(_normalized(candidate.patch))
        outcomes.append((candidate, parses, distinct, passed, exact))
    figures.candidates += len(candidates)
    figures.parses += sum(parses for _, parses, _, _, _ in outcomes)
    figures.distinct += sum(distinct for _, _, distinct, _, _ in outcomes)
    figures.valid += sum(
        parses and c.names_resolve and not c.call_problems for c, parses, _, _, _ in outcomes
    )
    figures.plausible_patches += sum(passed for _, _, _, passed, _ in outcomes)
    figures.plausible += any(passed for _, _, _, passed, _ in outcomes)
    fixed = any(exact for _, _, _, _, exact in outcomes)
    figures.fixed += fixed
    figures.fixed_by_kind[bug.kind] += fixed
    figures.top1_plausible += bool(outcomes and outcomes[0][3])
    figures.top1_fixed += bool(outcomes and outcomes[0][4])
    figures.no_candidate += not candidates
    if done is not None:
        figures.samples += done.samples
        figures.duplicates += done.duplicates
        figures.unparsable += done.unparsable
        figures.given_up += done.given_up
        figures.engine_queries += done.engine_queries
        figures.memo_hits += done.memo_hits
        figures.trie_prunes += done.trie_prunes
        figures.pruned_tokens += done.pruned_tokens
        figures.syntax_prunes += done.syntax_prunes
        figures.call_prunes += done.call_prunes
    return {
        "patches": [
            {
                "patch": c.patch.strip(),
                "parses": parses,
                "valid": parses and c.names_resolve and not c.call_problems,
                "passes": passed,
            }
            for c, parses, _, passed, _ in outcomes
        ],  # fmt: skip
        "fixed": fixed,
        "samples": done.samples if done is not None else None,
        "stopped_by": done.stopped_by if done is not None else None,
    }


def _parses(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def _normalized(patch: str) -> str:
    """Two patches are the same candidate when their code tokens are (as serving decides)."""
    tokens = _code_tokens(patch)
    return "\x00".join(tokens) if tokens is not None else " ".join(patch.split())


def _same_code(patch: str, original: str) -> bool:
    """Equal token by token (whitespace and comments aside)."""
    mine = _code_tokens(patch)
    return mine is not None and mine == _code_tokens(original)


def _code_tokens(code: str) -> list[str] | None:
    try:
        return [
            t.string
            for t in tokenize.generate_tokens(io.StringIO(code.strip() + "\n").readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                              tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
        ]  # fmt: skip
    except (tokenize.TokenError, SyntaxError):
        return None


def _brief(row: dict[str, Any], mode: str) -> str:
    outcome = row.get(mode, {})
    if "error" in outcome:
        return f"{mode}: error"
    patches = outcome.get("patches", [])
    passing = sum(p["passes"] for p in patches)
    return (
        f"{mode}: {len(patches)} cand/{outcome.get('samples')} samples, {passing} pass, "
        f"fixed={outcome.get('fixed')}, {outcome.get('seconds')} s"
    )
