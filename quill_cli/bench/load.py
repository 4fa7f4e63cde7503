"""`quill bench load`: many simulated editors driving one serving process over gRPC, the way the
language server does (quill_cli/bench/grpc_editor.py: typing, Complete calls cancelled by the
next keystroke, SyncWorkspace, ReportEvents), in steps of more and more editors, each step
`--step-seconds` long; it stops by itself.

Two engines (`--engine simulated|real|both`):

- simulated: `quill serve --engine simulated`, a SIMULATED engine streaming at a data-centre GPU's
  pace (serving/engine/simulated.py; no model runs), so the layers above the engine are what is
  measured. In the same run the same steps go to a bare grpc.aio server that does no work at the
  same pace (quill_cli/bench/bare_server.py): the stack's own limit on this machine. Reported:
  sustained completions per second (the best step without errors whose median latency above
  the engine's own pace stays under `--max-added-ms`: a server that falls behind queues, and
  its median grows; the p95 on a shared machine also carries other processes' noise), serving
  CPU seconds per completion and the completions per second one core would hold at that cost,
  p50/p95 latency added above the engine's pace, errors, and the bare server's figures.
- real: `quill serve` on vLLM: how many editors one serving process holds with a keystroke to
  suggestion p95 of at most `--p95-target-ms`, and where the time goes (stage timings serving
  reports, plus the client's debounce and what the network and gRPC add).

Before the steps every editor's workspace is synced and indexed, so steps measure steady typing,
not first indexing. The benchmark process drives all editors and shares the machine's cores
with serving; its own CPU share is reported, and a step where it is near one core is marked
`client_bound`.

`--minutes N` is a soak instead: `--soak-editors` gRPC editors and `--soak-language-servers` real
`quill lsp` processes (quill_cli/bench/lsp_typist.py) type for N minutes; serving's and the
language servers' resident memory is sampled every `--sample-seconds`, and the growth after the
first quarter (warm-up) is compared with `--rss-growth-bound-mb`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.bench.grpc_editor import Call, EditorSettings, GrpcEditor
from quill_cli.bench.report import machine_info, percentile, write_json
from quill_cli.bench.typist import TypingPace, add_typing_arguments, source_texts

SIMULATED_LABEL = "SIMULATED engine (no model runs; tokens streamed at a data-centre GPU's pace)"
_DEFAULT_STEPS = {"simulated": "10,20,40,80,160,320", "real": "1,2,3,4,6,8"}
_STAGES = ("prompt_build_ms", "queue_wait_ms", "time_to_first_token_ms", "decode_ms",
           "postprocess_ms", "total_ms")  # fmt: skip
# A step where the benchmark process itself used this much of a core measured the client too.
_CLIENT_BOUND_SHARE = 0.9


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("load", help="many simulated editors against one serving over gRPC")
    p.add_argument("--engine", choices=("simulated", "real", "both"), default="simulated")
    p.add_argument(
        "--editors",
        default=None,
        help="editor counts, one step each, comma-separated (default: simulated "
        f"{_DEFAULT_STEPS['simulated']}, real {_DEFAULT_STEPS['real']})",
    )
    p.add_argument("--step-seconds", type=float, default=30.0, help="measured time per step")
    p.add_argument("--warmup-seconds", type=float, default=5.0, help="unmeasured start of a step")
    add_typing_arguments(p, think_share=0.1)
    p.add_argument("--accept-share", type=float, default=0.3, help="suggestions accepted")
    p.add_argument("--no-retrieval", dest="retrieval", action="store_false")
    p.add_argument("--ttft-ms", type=float, default=None, help="simulated time to first token")
    p.add_argument("--tpot-ms", type=float, default=None, help="simulated time per output token")
    p.add_argument(
        "--max-added-ms",
        type=float,
        default=50.0,
        help="simulated: a step holds while its median latency above the engine's pace is under "
        "this (default %(default)s)",
    )
    p.add_argument("--p95-target-ms", type=float, default=2000.0)
    p.add_argument("--minutes", type=float, default=None, help="soak for this long instead")
    p.add_argument("--soak-editors", type=int, default=20)
    p.add_argument("--soak-language-servers", type=int, default=2)
    p.add_argument("--sample-seconds", type=float, default=30.0)
    p.add_argument("--rss-growth-bound-mb", type=float, default=50.0)
    p.add_argument("--serve-arg", action="append", default=[], help="extra `quill serve` argument")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from serving.engine.simulated import SimulatedPace

    default = SimulatedPace()
    args.ttft_ms = args.ttft_ms or default.ttft_ms
    args.tpot_ms = args.tpot_ms or default.tpot_ms
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    figures: dict[str, Any] = {}
    if args.minutes:
        figures["soak"] = await _soak(args)
    else:
        if args.engine in ("simulated", "both"):
            figures["simulated"] = await _simulated(args)
        if args.engine in ("real", "both"):
            figures["real"] = await _real(args)
    figures["settings"] = {
        key: getattr(args, key)
        for key in ("step_seconds", "warmup_seconds", "cps", "think_share", "client_debounce_ms",
                    "accept_share", "retrieval", "serve_arg", "seed")
    }  # fmt: skip
    figures["machine"] = machine_info()
    write_json(args.json, figures)
    return 0


# ---- the processes under test ----


@dataclass
class Target:
    address: str
    pid: int


@contextmanager
def _quill_serving(args: argparse.Namespace, engine: str) -> Iterator[Target]:
    from quill import envs
    from quill_cli.launcher import ServingProcess

    extra = list(args.serve_arg) + ([] if args.retrieval else ["--no-retrieval"])
    if engine == "simulated":
        extra.append(f"--engine=simulated:ttft_ms={args.ttft_ms},tpot_ms={args.tpot_ms}")
    log = envs.cache_dir() / f"bench-load-{engine}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quill-load-data-") as data:
        serving = ServingProcess(["--data-dir", data, *extra], log_path=log).start()
        assert serving.process is not None
        try:
            yield Target(serving.address, serving.process.pid)
        finally:
            serving.stop()


@contextmanager
def _bare_server(args: argparse.Namespace, shape: dict[str, int]) -> Iterator[Target]:
    from quill_cli.launcher import free_port, wait_for_serving

    address = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "quill_cli.bench.bare_server", "--address", address,
            "--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms)]  # fmt: skip
    for key, value in shape.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    process = subprocess.Popen(argv)
    try:
        wait_for_serving(address, 60, process)
        yield Target(address, process.pid)
    finally:
        process.terminate()
        process.wait(30)


def _cpu_seconds(pid: int) -> float:
    """CPU time of the process and its children (vLLM's engine core runs in one)."""
    import psutil

    process = psutil.Process(pid)
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def _rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


# ---- editors ----


def _settings(args: argparse.Namespace) -> EditorSettings:
    return EditorSettings(
        pace=TypingPace.from_args(args),
        debounce_s=args.client_debounce_ms / 1e3,
        accept_share=args.accept_share,
        retrieval=args.retrieval,
    )


def _editors(
    channels: list[grpc.aio.Channel], args: argparse.Namespace, first: int = 0
) -> list[GrpcEditor]:
    sources = source_texts(args.seed, len(channels) + first, 40, 100_000)[first:]
    return [
        GrpcEditor(channel, f"load-{first + n}", f"load_{first + n}.py", head, typed,
                   _settings(args), seed=args.seed * 100_000 + first + n)
        for n, (channel, (head, typed)) in enumerate(zip(channels, sources, strict=True))
    ]  # fmt: skip


async def _prepare_workspaces(address: str, args: argparse.Namespace, count: int) -> None:
    """Sync every editor's workspace and wait until serving has indexed them all."""
    if not args.retrieval:
        return
    async with open_channel(address) as channel:
        editors = _editors([channel] * count, args)
        stop = asyncio.Event()
        stop.set()  # sync, then stop at once
        await asyncio.gather(*(editor.run(stop) for editor in editors))
        stub = quill_pb2_grpc.QuillStub(channel)
        for _ in range(1200):
            pending = 0
            for editor in editors:
                answer = await stub.SyncWorkspace(
                    pb.SyncWorkspaceRequest(workspace_id=editor.workspace_id), timeout=30
                )
                pending += answer.status.files_pending or not answer.status.files_indexed
            if not pending:
                return
            await asyncio.sleep(0.5)


async def _step(
    target: Target, editors: int, args: argparse.Namespace, pace: tuple[float, float] | None
) -> dict[str, Any]:
    """`editors` editors type against `target` for one step; its figures."""
    import psutil

    channels = [open_channel(target.address) for _ in range(editors)]
    group = _editors(channels, args)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(editor.run(stop)) for editor in group]
    await asyncio.sleep(args.warmup_seconds)
    me = psutil.Process()
    cpu_before, client_before, started = (
        _cpu_seconds(target.pid),
        sum(me.cpu_times()[:2]),
        (time.perf_counter()),
    )
    await asyncio.sleep(args.step_seconds)
    window = time.perf_counter() - started
    cpu = _cpu_seconds(target.pid) - cpu_before
    client_cpu = sum(me.cpu_times()[:2]) - client_before
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    for channel in channels:
        await channel.close()
    calls = [
        c for e in group for c in e.tally.calls
        if started <= c.sent_at < started + window and c.outcome != "stopped"
    ]  # fmt: skip
    figures = _call_figures(calls, window, pace)
    completions = figures["completions"]
    figures.update(
        editors=editors,
        serving_cpu_s=round(cpu, 2),
        serving_cpu_s_per_completion=round(cpu / completions, 5) if completions else None,
        serving_cores_busy=round(cpu / window, 2),
        client_cores_busy=round(client_cpu / window, 2),
        client_bound=client_cpu / window >= _CLIENT_BOUND_SHARE,
        events_sent=sum(e.tally.events_sent for e in group),
        events_recorded=sum(sum(e.tally.events_recorded.values()) for e in group),
        report_failures=sum(e.tally.report_failures for e in group),
        sync_failures=dict(sum((e.tally.sync_failures for e in group), Counter())),
    )
    print(f"{editors} editors: {_headline(figures)}", file=sys.stderr)
    return figures


def _call_figures(
    calls: list[Call], window: float, pace: tuple[float, float] | None
) -> dict[str, Any]:
    ok = [c for c in calls if c.outcome == "ok"]
    errors = Counter(c.outcome for c in calls if c.outcome not in ("ok", "cancelled"))
    keystroke = [(c.done_at - c.keystroke_at) * 1e3 for c in ok]
    figures: dict[str, Any] = {
        "requests": len(calls),
        "completions": len(ok),
        "completions_per_s": round(len(ok) / window, 2),
        "cancelled_share": round(sum(c.outcome == "cancelled" for c in calls) / len(calls), 3)
        if calls
        else 0.0,
        "errors": sum(errors.values()),
        "errors_by_code": dict(errors),
        "keystroke_to_suggestion_p50_ms": _rounded(percentile(keystroke, 50)),
        "keystroke_to_suggestion_p95_ms": _rounded(percentile(keystroke, 95)),
        "tokens_per_completion": {
            mode: round(statistics.fmean(c.tokens for c in ok if c.multi_line is multi), 1)
            for mode, multi in (("single", False), ("multi", True))
            if any(c.multi_line is multi for c in ok)
        },
    }
    if pace is not None:
        ttft, tpot = pace
        added = [(c.done_at - c.sent_at) * 1e3 - (ttft + max(0, c.tokens - 1) * tpot) for c in ok]
        figures["added_p50_ms"] = _rounded(percentile(added, 50))
        figures["added_p95_ms"] = _rounded(percentile(added, 95))
    figures["where_time_goes_mean_ms"] = _where_time_goes(ok)
    return figures


def _where_time_goes(ok: list[Call]) -> dict[str, float]:
    """Mean milliseconds per stage of the completions that arrived, serving's own timings plus
    the editor's debounce and what gRPC and the network add on the client's side."""
    timed = [(c, c.timings) for c in ok if c.timings is not None and c.timings.total_ms]
    if not timed:
        return {}
    result = {"debounce": _mean_ms((c.sent_at - c.keystroke_at) * 1e3 for c, _ in timed)}
    for stage in _STAGES:
        result[stage.removesuffix("_ms")] = _mean_ms(getattr(t, stage) for _, t in timed)
    result["grpc_and_client"] = _mean_ms(
        (c.done_at - c.sent_at) * 1e3 - t.total_ms for c, t in timed
    )
    return result


def _mean_ms(values: Iterable[float]) -> float:
    return round(statistics.fmean(values), 2)


def _rounded(value: float) -> float | None:
    return None if value != value else round(value, 1)  # NaN: no samples


def _headline(step: dict[str, Any]) -> str:
    added = f", added p95 {step['added_p95_ms']} ms" if "added_p95_ms" in step else ""
    return (
        f"{step['completions_per_s']} completions/s, keystroke to suggestion p95 "
        f"{step['keystroke_to_suggestion_p95_ms']} ms{added}, {step['errors']} errors, serving "
        f"{step['serving_cores_busy']} cores, client {step['client_cores_busy']} cores"
    )


def _steps(args: argparse.Namespace, engine: str) -> list[int]:
    return [int(n) for n in (args.editors or _DEFAULT_STEPS[engine]).split(",")]


async def _ramp(
    targets: list[Target],
    args: argparse.Namespace,
    steps: list[int],
    pace: tuple[float, float] | None,
    holds: Callable[[dict[str, Any]], bool],
) -> list[list[dict[str, Any]]]:
    """Steps of more editors, each step against every target in turn (so a shared machine's
    noise falls on all of them alike), until two steps in a row hold for none of them."""
    results: list[list[dict[str, Any]]] = [[] for _ in targets]
    failed_in_a_row = 0
    for editors in steps:
        for target, result in zip(targets, results, strict=True):
            result.append(await _step(target, editors, args, pace))
            result[-1]["holds"] = holds(result[-1])
        failed_in_a_row = 0 if any(r[-1]["holds"] for r in results) else failed_in_a_row + 1
        if failed_in_a_row == 2:
            break
    return results


# ---- the two engines ----


async def _simulated(args: argparse.Namespace) -> dict[str, Any]:
    pace = (args.ttft_ms, args.tpot_ms)
    steps = _steps(args, "simulated")

    def holds(step: dict[str, Any]) -> bool:
        added = step.get("added_p50_ms")
        return step["errors"] == 0 and added is not None and added <= args.max_added_ms

    with _quill_serving(args, "simulated") as quill:
        await _prepare_workspaces(quill.address, args, max(steps))
        # The bare server streams as much as Quill's serving did in a first, short step.
        calibration = await _step(quill, steps[0], args, pace)
        shape = _message_shape([calibration])
        with _bare_server(args, shape) as bare:
            quill_steps, bare_steps = await _ramp([quill, bare], args, steps, pace, holds)
    best = _best(quill_steps)
    bare_best = _best(bare_steps)
    return {
        "engine": SIMULATED_LABEL,
        "pace": {"ttft_ms": args.ttft_ms, "tpot_ms": args.tpot_ms},
        "completions_per_s": best["completions_per_s"] if best else 0.0,
        "bare_grpc_per_s": bare_best["completions_per_s"] if bare_best else 0.0,
        "ratio_to_bare": round(best["completions_per_s"] / bare_best["completions_per_s"], 3)
        if best and bare_best
        else None,
        "editors_sustained": best["editors"] if best else 0,
        "bare_editors_sustained": bare_best["editors"] if bare_best else 0,
        "serving_cpu_s_per_completion": best["serving_cpu_s_per_completion"] if best else None,
        "bare_cpu_s_per_completion": bare_best["serving_cpu_s_per_completion"]
        if bare_best
        else None,
        "completions_per_core_s": _per_core(best),
        "bare_completions_per_core_s": _per_core(bare_best),
        "p50_added_ms": best["added_p50_ms"] if best else None,
        "p95_added_ms": best["added_p95_ms"] if best else None,
        "errors": sum(step["errors"] for step in quill_steps),
        "bare_message_shape": shape,
        "steps": quill_steps,
        "bare_steps": bare_steps,
    }


def _message_shape(steps: list[dict[str, Any]]) -> dict[str, int]:
    """Tokens per call by mode in Quill's run, so the bare server streams as much."""
    tokens: dict[str, list[float]] = {"single": [], "multi": []}
    for step in steps:
        for mode, value in step["tokens_per_completion"].items():
            tokens[mode].append(value)
    single = round(statistics.fmean(tokens["single"])) if tokens["single"] else 10
    multi = round(statistics.fmean(tokens["multi"])) if tokens["multi"] else 40
    # Serving streams a single line token by token and a block line by line (about 8 tokens).
    return {"single_tokens": single, "single_messages": single,
            "multi_tokens": multi, "multi_messages": max(1, multi // 8)}  # fmt: skip


def _per_core(step: dict[str, Any] | None) -> float | None:
    """Completions per second one core would hold at the step's CPU cost per completion."""
    cost = step["serving_cpu_s_per_completion"] if step else None
    return round(1 / cost, 1) if cost else None


def _best(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    held = [step for step in steps if step["holds"]]
    return max(held, key=lambda step: step["completions_per_s"]) if held else None


async def _real(args: argparse.Namespace) -> dict[str, Any]:
    steps = _steps(args, "real")

    def holds(step: dict[str, Any]) -> bool:
        p95 = step["keystroke_to_suggestion_p95_ms"]
        return step["errors"] == 0 and p95 is not None and p95 <= args.p95_target_ms

    with _quill_serving(args, "real") as target:
        await _prepare_workspaces(target.address, args, max(steps))
        (results,) = await _ramp([target], args, steps, None, holds)
    held = [step for step in results if step["holds"]]
    last = held[-1] if held else None
    return {
        "engine": "real (vLLM in `quill serve`)",
        "editors_at_p95_2s": last["editors"] if last else 0,
        "p95_target_ms": args.p95_target_ms,
        "where_time_goes_mean_ms": last["where_time_goes_mean_ms"] if last else {},
        "serving_cpu_s_per_completion": last["serving_cpu_s_per_completion"] if last else None,
        "steps": results,
    }


# ---- soak ----


async def _soak(args: argparse.Namespace) -> dict[str, Any]:
    from quill_cli.bench.lsp_typist import LspTypist

    engine = "real" if args.engine == "real" else "simulated"
    seconds = args.minutes * 60
    with (
        _quill_serving(args, engine) as target,
        tempfile.TemporaryDirectory(prefix="quill-soak-") as folder,
    ):
        await _prepare_workspaces(target.address, args, args.soak_editors)
        channels = [open_channel(target.address) for _ in range(args.soak_editors)]
        editors = _editors(channels, args)
        typists = [
            LspTypist(target.address, Path(folder), n, source_texts(args.seed + n, 6, 40, 3000),
                      TypingPace.from_args(args), args.client_debounce_ms / 1e3,
                      args.accept_share, seed=args.seed + n)
            for n in range(args.soak_language_servers)
        ]  # fmt: skip
        stop = asyncio.Event()
        tasks = [asyncio.create_task(e.run(stop)) for e in editors]
        tasks += [asyncio.create_task(t.run(stop)) for t in typists]
        samples = await _sample_memory(target, typists, seconds, args.sample_seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=120)
        for channel in channels:
            await channel.close()
    calls = [c for e in editors for c in e.tally.calls if c.outcome != "stopped"]
    figures = _call_figures(
        calls, seconds, (args.ttft_ms, args.tpot_ms) if engine == "simulated" else None
    )
    return {
        "engine": SIMULATED_LABEL if engine == "simulated" else "real",
        "minutes": args.minutes,
        "grpc_editors": args.soak_editors,
        "language_servers": args.soak_language_servers,
        "calls": figures,
        "language_server_typing": [vars(t.tally) for t in typists],
        "samples": samples,
        **_growth(samples, args.rss_growth_bound_mb),
    }


async def _sample_memory(
    target: Target, typists: list[Any], seconds: float, every: float
) -> list[dict[str, Any]]:
    samples = []
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        await asyncio.sleep(min(every, seconds - elapsed))
        pids = [t.client.server_pid for t in typists]
        samples.append(
            {
                "t_s": round(time.perf_counter() - started, 1),
                "serving_rss_mb": _rss_mb(target.pid),
                "language_server_rss_mb": [_rss_mb(pid) if pid else None for pid in pids],
            }
        )
        print(f"soak {samples[-1]}", file=sys.stderr)
    return samples


def _language_server_rss(sample: dict[str, Any], number: int) -> float:
    return float(sample["language_server_rss_mb"][number])


def _growth(samples: list[dict[str, Any]], bound_mb: float) -> dict[str, Any]:
    """Growth after warm-up: the mean of the last quarter of the samples minus the mean of the
    second quarter (means, so one sample's allocator swing does not decide it)."""
    if len(samples) < 4:
        return {"rss_growth_bound_mb": bound_mb}
    quarter = len(samples) // 4
    early, late = samples[quarter : 2 * quarter], samples[-quarter:]

    def growth(value: Callable[[dict[str, Any]], float]) -> float:
        return round(statistics.fmean(map(value, late)) - statistics.fmean(map(value, early)), 1)

    serving = growth(lambda s: s["serving_rss_mb"])
    servers = [
        growth(functools.partial(_language_server_rss, number=n))
        for n in range(len(samples[0]["language_server_rss_mb"]))
    ]
    return {
        "rss_growth_bound_mb": bound_mb,
        "serving_rss_growth_mb": serving,
        "language_server_rss_growth_mb": servers,
        "within_bound": serving <= bound_mb and all(g <= bound_mb for g in servers),
    }
