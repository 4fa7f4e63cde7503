"""`quill bench quality`: HumanEval infilling through the real serving path, and a
repository-level set for the context sources.

Each HumanEval task becomes what an editor would send: the code before the hole as prefix, a
blank line at the cursor, the code after the hole as suffix, in single-line mode for the
single-line set and multi-line mode for the multi-line set. The suggestion goes through the same
prompt building and post-processing a user gets (gRPC `Complete` of a `quill serve` process);
the completed program then runs the task's tests in a subprocess with a timeout.

The `repo_context` set (quill_cli/bench/repo_context.py) hides lines of a real package that call
a name defined in another of its files, and asks a real `quill lsp` with each context source on
and off (open documents, recent edits, retrieval).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quill_cli.bench import repo_context
from quill_cli.bench.report import machine_info, write_json

SETS = {
    "single_line": ("HumanEval-SingleLineInfilling.jsonl.gz", "single"),
    "multi_line": ("HumanEval-MultiLineInfilling.jsonl.gz", "multi"),
}
# The repository-level set and its conditions (quill_cli/bench/repo_context.py).
REPO_SET = "repo_context"
EXEC_TIMEOUT_S = 10.0


def default_data_dir() -> Path:
    # The checkout sits next to shared/ (../shared/data/...), in development and in CI.
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "humaneval-infilling"


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    suffix: str
    canonical: str
    test: str
    entry_point: str

    def program(self, middle: str) -> str:
        return f"{self.prompt}{middle}\n{self.suffix}\n{self.test}\ncheck({self.entry_point})\n"


def load_tasks(path: Path, limit: int | None, seed: int) -> list[Task]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    tasks = [
        Task(r["task_id"], r["prompt"], r["suffix"], r["canonical_solution"], r["test"],
             r["entry_point"])
        for r in rows
    ]  # fmt: skip
    if limit is not None and limit < len(tasks):
        tasks = random.Random(seed).sample(tasks, limit)
    return tasks


def passes(task: Task, middle: str, timeout_s: float = EXEC_TIMEOUT_S) -> bool:
    return program_passes(task.program(middle), timeout_s)


def program_passes(program: str, timeout_s: float = EXEC_TIMEOUT_S) -> bool:
    """Run a program with its tests in an isolated interpreter, in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="quill-quality-") as scratch:
        script = Path(scratch) / "candidate.py"
        script.write_text(program)
        try:
            result = subprocess.run(
                [sys.executable, "-I", str(script)],
                cwd=scratch,
                capture_output=True,
                timeout=timeout_s,
                env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
            )
        except subprocess.TimeoutExpired:
            return False
    return result.returncode == 0


def exact_match(middle: str, canonical: str) -> bool:
    def normalize(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip("\n").split("\n")]

    return normalize(middle) == normalize(canonical)


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("quality", help="HumanEval single/multi-line infilling pass rate")
    p.add_argument("--limit", type=int, default=None, help="tasks per set (sampled with --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sets", default="single_line,multi_line", help=f"of {', '.join([*SETS, REPO_SET])}"
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=Path(sysconfig.get_paths()["purelib"]) / "click",
        help="installed package the repo_context set is built from",
    )
    p.add_argument(
        "--conditions",
        default="none,open_documents,recent_edits,retrieval,all",
        help="context conditions of the repo_context set",
    )
    p.add_argument("--data", type=Path, default=None, help="humaneval-infilling folder")
    p.add_argument(
        "--address", default=None, help="use this running serving instead of starting one"
    )
    p.add_argument("--model", default=None, help="model for the serving process it starts")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from quill import envs
    from quill_cli.launcher import ServingProcess

    data = args.data or default_data_dir()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS and n != REPO_SET]
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown += [c for c in conditions if c not in repo_context.CONDITIONS]
    if unknown:
        known = ", ".join([*SETS, REPO_SET, *repo_context.CONDITIONS])
        print(f"unknown sets or conditions {unknown}; known: {known}", file=sys.stderr)
        return 2
    serving = None
    address = args.address
    # Workspaces the repo_context set syncs live here, never in the user's cache.
    data_dir = tempfile.TemporaryDirectory(prefix="quill-bench-quality-")
    if address is None:
        log = envs.cache_dir() / "bench-quality-serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        serve_args = ["--data-dir", data_dir.name]
        serving = ServingProcess(
            serve_args + (["--model", args.model] if args.model else []), log_path=log
        )
        address = serving.start().address
    try:
        figures: dict[str, Any] = {}
        for name in names:
            if name == REPO_SET:
                figures[name] = await repo_context.score(
                    args.repo, args.limit or 30, args.seed, address, conditions
                )
                continue
            file_name, mode = SETS[name]
            tasks = load_tasks(data / file_name, args.limit, args.seed)
            figures[name] = await _score(tasks, mode, address, args.concurrency)
    finally:
        if serving is not None:
            serving.stop()
        data_dir.cleanup()
    figures.update(
        {"seed": args.seed, "limit": args.limit, "model": args.model or "smollm2-135m",
         "machine": machine_info()}
    )  # fmt: skip
    write_json(args.json, figures)
    return 0


async def _score(tasks: list[Task], mode: str, address: str, concurrency: int) -> dict[str, Any]:
    from quill.channel import open_channel
    from quill.v1 import quill_pb2 as pb
    from quill.v1 import quill_pb2_grpc

    mode_value = (
        pb.COMPLETION_MODE_SINGLE_LINE if mode == "single" else pb.COMPLETION_MODE_MULTI_LINE
    )
    semaphore = asyncio.Semaphore(concurrency)
    results: list[tuple[bool, bool, float]] = []
    started = time.perf_counter()
    loop = asyncio.get_running_loop()

    async with open_channel(address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)

        async def one(task: Task, executor: ThreadPoolExecutor) -> None:
            async with semaphore:
                request = pb.CompleteRequest(
                    file_path="humaneval.py",
                    language="python",
                    # The user is on a blank line where the hole is.
                    prefix=task.prompt,
                    suffix="\n" + task.suffix,
                    mode=mode_value,
                )
                t0 = time.perf_counter()
                text = ""
                async for response in stub.Complete(request):
                    if response.HasField("done"):
                        text = response.done.text
                latency = time.perf_counter() - t0
            ok = await loop.run_in_executor(executor, passes, task, text)
            results.append((ok, exact_match(text, task.canonical), latency))
            done = len(results)
            if done % 10 == 0 or done == len(tasks):
                print(f"{mode}: {done}/{len(tasks)}", file=sys.stderr)

        with ThreadPoolExecutor(max_workers=2) as executor:
            await asyncio.gather(*(one(task, executor) for task in tasks))

    n = len(results)
    return {
        "n": n,
        "pass_rate": round(sum(r[0] for r in results) / n, 4) if n else 0.0,
        "exact_match": round(sum(r[1] for r in results) / n, 4) if n else 0.0,
        "mean_latency_s": round(sum(r[2] for r in results) / n, 3) if n else 0.0,
        "wall_s": round(time.perf_counter() - started, 1),
    }
