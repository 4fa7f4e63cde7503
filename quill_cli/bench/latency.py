"""`quill bench latency`: the cost of each layer over raw vLLM generation.

In one run, on the same model and the same prompts, each prompt goes (a) straight to vLLM's
AsyncLLM in this process, (b) through gRPC `Complete` of a `quill serve` subprocess and (c)
through the language server's `textDocument/inlineCompletion` (a `quill lsp` subprocess talking
to that serving process). The three are interleaved prompt by prompt so machine noise hits them
alike. Decoding is greedy and (a) uses exactly the prompt tokens and stop strings serving builds,
so all paths generate the same tokens; the benchmark checks that.

`--baseline CHECKOUT` adds, in the same run, a language server started from another checkout of
Quill (an earlier commit, say): its start-up time and its inlineCompletion latency against the
same serving process, interleaved with this checkout's, and the ratios between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from quill_cli.bench.report import machine_info, summarize_ms, write_json

# Mid-line Python prefixes whose greedy single-line continuations run for many tokens.
PROMPTS = [
    "import os\n\n\ndef list_python_files(root):\n    return [os.path.join(dirpath, name) for",
    "def mean(values):\n    total = sum(values)\n    return total /",
    'class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n    def __repr__(self):\n        return f"Point(',
    'import json\n\n\ndef load_config(path):\n    with open(path, encoding="utf-8") as handle:\n        return',
    "def is_palindrome(text):\n    cleaned = [c.lower() for c in text if",
    "def fizzbuzz(n):\n    for i in range(1, n + 1):\n        if i % 15 == 0:\n            print(",
    'import re\n\nEMAIL = re.compile(r"',
    "def factorial(n):\n    if n <= 1:\n        return 1\n    return n *",
]

LSP_START_SAMPLES = 5


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("latency", help="raw vLLM vs gRPC Complete vs LSP inlineCompletion")
    p.add_argument("--rounds", type=int, default=3, help="passes over the prompt set")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--model", default=None, help="model for both paths (default: bundled)")
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="also measure the language server of this checkout of Quill, side by side",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from quill import envs

    envs.force_offline()
    from quill_cli.launcher import ServingProcess
    from serving.config import EngineConfig
    from serving.model_store import DEFAULT_MODEL, resolve_model

    model = resolve_model(args.model)
    serve_args = ["--model", args.model] if args.model else []
    lsp_start = await _measure_lsp_start(args.baseline)

    log = envs.cache_dir() / "bench-latency-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    serving = ServingProcess(serve_args, log_path=log).start()
    engine = None
    client = None
    baseline = None
    try:
        from serving.engine.vllm_engine import VllmEngine

        engine = await asyncio.to_thread(
            VllmEngine.start,
            EngineConfig(model=model),
        )
        client = await _start_lsp_client(serving.address, args.max_tokens)
        if args.baseline is not None:
            baseline = await _start_lsp_client(serving.address, args.max_tokens, args.baseline)
        figures = await _measure(engine, model, serving.address, client, baseline, args)
    finally:
        for started_client in (client, baseline):
            if started_client is not None:
                await started_client.stop()
        if engine is not None:
            engine.shutdown()
            engine = None
            gc.collect()  # finalize vLLM objects while the interpreter is intact
        serving.stop()
    figures["lsp_start_s"] = round(statistics.median(lsp_start["current"]), 3)
    figures["lsp_start_samples_s"] = [round(s, 3) for s in lsp_start["current"]]
    if args.baseline is not None:
        figures["baseline"] = str(args.baseline)
        figures["baseline_lsp_start_s"] = round(statistics.median(lsp_start["baseline"]), 3)
        figures["baseline_lsp_start_samples_s"] = [round(s, 3) for s in lsp_start["baseline"]]
        figures["lsp_start_over_baseline"] = round(
            figures["lsp_start_s"] / figures["baseline_lsp_start_s"], 3
        )
    figures["machine"] = machine_info()
    figures["model"] = args.model or DEFAULT_MODEL
    write_json(args.json, figures)
    return 0


def _checkout_env(checkout: Path | None) -> dict[str, str] | None:
    """The environment that makes `python -m quill` import `checkout` (None: this one)."""
    if checkout is None:
        return None
    return {**os.environ, "PYTHONPATH": str(checkout.resolve())}


async def _measure_lsp_start(baseline: Path | None) -> dict[str, list[float]]:
    """Seconds from spawning `quill lsp` to its answer to `initialize`, for this checkout and
    (taking turns with it) the baseline's."""
    from quill_cli.lsp_client import StdioLanguageClient

    checkouts: dict[str, Path | None] = {"current": None}
    if baseline is not None:
        checkouts["baseline"] = baseline
    samples: dict[str, list[float]] = {name: [] for name in checkouts}
    for _ in range(LSP_START_SAMPLES):
        for name, checkout in checkouts.items():
            # An address nobody listens on: start-up must not depend on serving.
            client = StdioLanguageClient(Path.cwd(), {"servingAddress": "127.0.0.1:9"})
            samples[name].append(await client.start(env=_checkout_env(checkout)))
            await client.stop()
    return samples


async def _start_lsp_client(address: str, max_tokens: int, checkout: Path | None = None) -> Any:
    from quill_cli.lsp_client import StdioLanguageClient

    client = StdioLanguageClient(
        Path.cwd(),
        {"servingAddress": address, "completionMode": "single", "maxTokens": max_tokens},
    )
    await client.start(env=_checkout_env(checkout))
    return client


async def _measure(
    engine: Any,
    engine_model: str,
    address: str,
    client: Any,
    baseline: Any,
    args: argparse.Namespace,
) -> dict[str, Any]:
    import grpc

    from quill.v1 import quill_pb2 as pb
    from quill.v1 import quill_pb2_grpc
    from serving.config import CompletionConfig
    from serving.engine.base import GenerationRequest
    from serving.fim import choose_template
    from serving.postprocess import split_blank_line
    from serving.prompt import prompt_token_budget

    config = CompletionConfig()
    budget = prompt_token_budget(engine.max_model_len, args.max_tokens, config.max_prompt_tokens)
    # Exactly the prompt serving builds for the same request.
    template = choose_template(config.fim_template, engine_model)
    samples: dict[str, list[float]] = {"engine": [], "grpc": [], "lsp": [], "baseline": []}
    paired: dict[str, list[float]] = {"grpc": [], "lsp": [], "lsp_over_baseline": []}
    mismatches: list[str] = []
    tokens_per_prompt: list[int] = []
    channel = grpc.aio.insecure_channel(address)
    stub = quill_pb2_grpc.QuillStub(channel)
    bench_file = Path.cwd() / "quill_bench_latency.py"

    async def via_engine(prefix: str, request_id: str) -> tuple[float, str, int]:
        prompt_ids, _ = template.token_ids(split_blank_line(prefix)[0], "", engine.encode, budget)
        request = GenerationRequest(
            request_id=request_id,
            prompt_token_ids=prompt_ids,
            max_tokens=args.max_tokens,
            stop=(*template.stop, "\n"),
        )
        started = time.perf_counter()
        text, tokens = "", 0
        async for out in engine.generate(request):
            text += out.text_delta
            tokens += out.new_token_count
        return time.perf_counter() - started, text, tokens

    async def via_grpc(prefix: str) -> tuple[float, pb.CompletionDone]:
        request = pb.CompleteRequest(
            prefix=prefix,
            language="python",
            mode=pb.COMPLETION_MODE_SINGLE_LINE,
            limits=pb.CompletionLimits(max_tokens=args.max_tokens),
        )
        started = time.perf_counter()
        done = None
        async for response in stub.Complete(request):
            if response.HasField("done"):
                done = response.done
        assert done is not None
        return time.perf_counter() - started, done

    async def via_lsp(prefix: str, lsp: Any) -> tuple[float, str]:
        uri = lsp.open(bench_file, prefix)
        lines = prefix.split("\n")
        started = time.perf_counter()
        items = await lsp.inline_completion(
            uri, len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2
        )
        elapsed = time.perf_counter() - started
        return elapsed, items[0].insert_text if items else ""

    try:
        for round_index in range(args.rounds + 1):  # round 0 warms every path up
            for number, prefix in enumerate(PROMPTS):
                # Rotate which path goes first: a path that runs right after another one
                # shares the CPU with that engine's wind-down, so no path may always be second.
                order = ["engine", "grpc", "lsp", *(["baseline"] if baseline else [])]
                shift = (round_index + number) % len(order)
                timings: dict[str, float] = {}
                for path in order[shift:] + order[:shift]:
                    if path == "engine":
                        timings["engine"], _, engine_tokens = await via_engine(
                            prefix, f"bench-{round_index}-{number}"
                        )
                    elif path == "grpc":
                        timings["grpc"], done = await via_grpc(prefix)
                    elif path == "lsp":
                        timings["lsp"], lsp_text = await via_lsp(prefix, client)
                    else:
                        timings["baseline"], _ = await via_lsp(prefix, baseline)
                engine_s, grpc_s, lsp_s = timings["engine"], timings["grpc"], timings["lsp"]
                if done.completion_tokens != engine_tokens:
                    mismatches.append(
                        f"prompt {number}: engine {engine_tokens} tokens, gRPC {done.completion_tokens}"
                    )
                if lsp_text != done.text:
                    mismatches.append(f"prompt {number}: LSP text differs from gRPC text")
                if round_index == 0:
                    tokens_per_prompt.append(engine_tokens)
                    continue
                samples["engine"].append(engine_s)
                samples["grpc"].append(grpc_s)
                samples["lsp"].append(lsp_s)
                paired["grpc"].append(grpc_s / engine_s)
                paired["lsp"].append(lsp_s / engine_s)
                if baseline:
                    samples["baseline"].append(timings["baseline"])
                    paired["lsp_over_baseline"].append(lsp_s / timings["baseline"])
                print(
                    f"round {round_index} prompt {number}: engine {engine_s * 1e3:.0f} ms, "
                    f"gRPC {grpc_s * 1e3:.0f} ms, LSP {lsp_s * 1e3:.0f} ms ({engine_tokens} tokens)",
                    file=sys.stderr,
                )
    finally:
        await channel.close()

    engine_summary = summarize_ms(samples["engine"])
    grpc_summary = summarize_ms(samples["grpc"])
    lsp_summary = summarize_ms(samples["lsp"])
    comparison: dict[str, Any] = {}
    if baseline:
        comparison = {
            "baseline_lsp": summarize_ms(samples["baseline"]),
            "lsp_over_baseline_paired_median": round(
                statistics.median(paired["lsp_over_baseline"]), 3
            ),
        }
    return {
        **comparison,
        "engine": engine_summary,
        "grpc": grpc_summary,
        "lsp": lsp_summary,
        "grpc_over_engine_p50": round(grpc_summary["p50_ms"] / engine_summary["p50_ms"], 3),
        "lsp_over_engine_p50": round(lsp_summary["p50_ms"] / engine_summary["p50_ms"], 3),
        "grpc_over_engine_p95": round(grpc_summary["p95_ms"] / engine_summary["p95_ms"], 3),
        "lsp_over_engine_p95": round(lsp_summary["p95_ms"] / engine_summary["p95_ms"], 3),
        # The same prompt's ratio, then the median over prompts and rounds: less noisy than
        # the ratio of medians when prompts differ in length.
        "grpc_over_engine_paired_median": round(statistics.median(paired["grpc"]), 3),
        "lsp_over_engine_paired_median": round(statistics.median(paired["lsp"]), 3),
        "tokens_per_prompt": tokens_per_prompt,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "mismatches": mismatches,
    }
