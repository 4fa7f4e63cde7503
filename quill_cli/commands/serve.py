"""`quill serve`: the serving layer (gRPC, the engine, /metrics), until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quill import envs

if TYPE_CHECKING:
    from serving.engine.base import Engine

logger = logging.getLogger(__name__)


def _parse_engine_arg(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--engine-arg wants KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.replace("-", "_"), value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the serving layer (gRPC + vLLM + /metrics)")
    p.add_argument(
        "--model",
        default=None,
        help="bundled default (smollm2-135m), a local folder or a HF id in the local cache",
    )
    p.add_argument("--served-model-name", default=None)
    p.add_argument(
        "--address",
        default=envs.DEFAULT_SERVING_ADDRESS,
        help="gRPC host:port (default %(default)s)",
    )
    p.add_argument(
        "--metrics-address",
        default=envs.DEFAULT_METRICS_ADDRESS,
        help="/metrics host:port; empty disables (default %(default)s)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        help="vLLM dtype; auto: the model's on GPUs, bfloat16 on CPUs that compute it natively, "
        "else float32",
    )
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=None)
    p.add_argument(
        "--kv-cache-gib", type=float, default=None, help="fixed KV cache size (CPU default 2)"
    )
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument(
        "--enforce-eager",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="skip torch.compile (and CUDA graphs): starts in seconds instead of about a minute, "
        "generates slower (default: vLLM's, compiled)",
    )
    p.add_argument(
        "--engine-worker-process",
        action="store_true",
        help="run vLLM's worker in its own process (vLLM's default; off here to save CPU)",
    )
    p.add_argument(
        "--engine-arg",
        action="append",
        type=_parse_engine_arg,
        default=[],
        metavar="KEY=VALUE",
        help="any other vLLM AsyncEngineArgs field, repeatable",
    )
    p.add_argument("--max-prompt-tokens", type=int, default=None)
    p.add_argument(
        "--fim-template",
        default="auto",
        help="auto (from the model), none (prefix-only), starcoder, qwen2.5-coder, "
        "deepseek-coder, codellama or codestral",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="workspaces' synced files and retrieval indices (default <cache dir>/data)",
    )
    p.add_argument(
        "--retrieval",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="repository retrieval in completion prompts (default on)",
    )
    p.add_argument("--retrieval-token-budget", type=int, default=None)
    p.add_argument(
        "--embedding-model", default=None, help="local sentence-transformers folder for retrieval"
    )
    p.add_argument(
        "--repair-prompt-style",
        choices=("rewrite", "hint", "regenerate"),
        default=None,
        help="repair prompt style (see docs/repair.md); default rewrite",
    )
    p.add_argument(
        "--api-auto-mode",
        choices=("constrain", "prompt", "both", "off"),
        default="constrain",
        help="API search in completions of models without tool training (docs/api-search.md)",
    )
    p.add_argument(
        "--shutdown-grace", type=float, default=5.0, help="seconds in-flight RPCs get on SIGTERM"
    )
    p.add_argument(
        "--engine",
        default="vllm",
        metavar="vllm|simulated[:ttft_ms=N,tpot_ms=N,max_seqs=N]",
        help="vllm (default). simulated: NOT FOR PRODUCTION, tests and benchmarks only: no model "
        "runs, tokens copied from the prompt stream at a GPU's pace (docs/benchmarks.md)",
    )
    p.set_defaults(func=run)


def _engine_choice(spec: str) -> tuple[str, dict[str, Any]]:
    from quill_cli.bench.report import parse_named_options

    name, options = parse_named_options(spec, strict=True)
    if name not in ("vllm", "simulated") or (name == "vllm" and options):
        raise ValueError(f"--engine wants vllm or simulated[:key=value,...], got {spec!r}")
    return name, options


def run(args: argparse.Namespace) -> int:
    envs.force_offline()
    try:
        engine_kind, engine_options = _engine_choice(args.engine)
        if engine_kind == "simulated":
            from serving.engine.simulated import SimulatedPace

            pace = SimulatedPace.from_options(engine_options)
    except ValueError as error:
        logger.error("%s", error)
        return 2
    from serving.config import CompletionConfig, EngineConfig, ServingConfig
    from serving.model_store import DEFAULT_MODEL, ModelNotFoundError, resolve_model

    try:
        model = resolve_model(args.model)
    except ModelNotFoundError as error:
        logger.error("%s", error)
        return 2
    bundled = args.model in (None, DEFAULT_MODEL)
    engine = EngineConfig(
        model=model,
        served_model_name=args.served_model_name or (DEFAULT_MODEL if bundled else None),
        dtype=args.dtype,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        kv_cache_gib=args.kv_cache_gib,
        max_model_len=args.max_model_len,
        enforce_eager=args.enforce_eager,
        engine_worker_process=args.engine_worker_process,
        vllm_log_level="DEBUG" if args.log_level.upper() == "DEBUG" else "WARNING",
        extra_engine_args=dict(args.engine_arg),
    )
    completion = CompletionConfig(fim_template=args.fim_template)
    from serving.fim import choose_template

    try:
        choose_template(args.fim_template, model)
    except ValueError as error:
        logger.error("%s", error)
        return 2
    if args.max_prompt_tokens:
        completion.max_prompt_tokens = args.max_prompt_tokens
    config = ServingConfig(
        engine=engine,
        completion=completion,
        address=args.address,
        metrics_address=args.metrics_address,
        shutdown_grace_s=args.shutdown_grace,
        api_auto_mode=args.api_auto_mode,
    )
    config.retrieval.enabled = args.retrieval
    if args.repair_prompt_style is not None:
        config.repair.prompt_style = args.repair_prompt_style
    config.retrieval.data_dir = args.data_dir
    config.retrieval.embedding_model = args.embedding_model
    if args.retrieval_token_budget is not None:
        config.retrieval.token_budget = args.retrieval_token_budget
    from serving.server import serve

    start_engine: Callable[[], Engine]
    if engine_kind == "simulated":
        from serving.engine.simulated import SimulatedEngine

        def start_engine() -> Engine:
            return SimulatedEngine.start(model, pace, engine.served_model_name)

    else:
        from serving.engine.vllm_engine import VllmEngine

        def start_engine() -> Engine:
            return VllmEngine.start(engine)

    try:
        asyncio.run(serve(config, start_engine))
    except OSError as error:
        logger.error("%s", error)
        return 1
    gc.collect()  # finalize engine objects before interpreter teardown
    return 0
