"""The `quill` command. Each subcommand imports its heavy modules only when it runs, so
`quill lsp` never pays for vLLM or torch."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

from quill import envs

logger = logging.getLogger("quill")


def _configure_logging(level: str) -> None:
    # stderr only: stdout is the LSP channel for `quill lsp` and the result for `quill complete`.
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pygls logs every feature registration and message at INFO; keep it to problems.
    if level.upper() != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)


def _parse_engine_arg(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--engine-arg wants KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.replace("-", "_"), value


def _add_serve(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    envs.force_offline()
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
    from serving.engine.vllm_engine import VllmEngine
    from serving.server import serve

    try:
        asyncio.run(serve(config, lambda: VllmEngine.start(engine)))
    except OSError as error:
        logger.error("%s", error)
        return 1
    gc.collect()  # finalize engine objects before interpreter teardown
    return 0


def _add_lsp(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lsp", help="run the language server over stdio (editors start this)")
    p.add_argument(
        "--address", default=None, help="serving host:port (overrides initializationOptions)"
    )
    p.set_defaults(func=_cmd_lsp)


def _cmd_lsp(args: argparse.Namespace) -> int:
    from lsp_server.server import create_server

    server = create_server()
    if args.address:
        server.settings.serving_address = args.address
        server.pinned_settings["serving_address"] = args.address
    server.start_io()
    return 0


def _parse_location(text: str) -> tuple[Path, int, int]:
    path, _, rest = text.rpartition(":")
    path2, _, line = path.rpartition(":")
    if not path2 or not line.isdigit() or not rest.isdigit():
        raise argparse.ArgumentTypeError(f"expected FILE:LINE:COL (1-based), got {text!r}")
    if int(line) < 1 or int(rest) < 1:
        raise argparse.ArgumentTypeError("LINE and COL are 1-based")
    return Path(path2), int(line), int(rest)


def _add_complete(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="one completion through the language server, printed")
    p.add_argument(
        "location", type=_parse_location, metavar="FILE:LINE:COL", help="1-based line and column"
    )
    p.add_argument("--address", default=None, help="serving host:port")
    p.add_argument("--mode", choices=("auto", "single", "multi"), default="auto")
    p.add_argument(
        "--root", type=Path, default=None, help="workspace root (default: current folder)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the model")
    p.add_argument(
        "--retrieval",
        action="store_true",
        help="sync the workspace to serving first so the prompt can use it (slow the first time)",
    )
    p.set_defaults(func=_cmd_complete)


def _cmd_complete(args: argparse.Namespace) -> int:
    from lsp_server.stdio_client import StdioLanguageClient, read_source_file

    path, line, column = args.location
    text = read_source_file(path)
    if text is None:
        return 2
    # One-shot: the whole suggestion, not the first line an editor would show while the block
    # is still being written.
    options: dict[str, Any] = {
        "completionMode": args.mode,
        "requestTimeoutS": args.timeout,
        "streamFirstLine": False,
        "multiLineDelayMs": 0,
        # Uploading and indexing the whole folder for one suggestion costs far more than it
        # brings; editors keep the workspace synced instead.
        "retrieval": args.retrieval,
    }
    if args.address:
        options["servingAddress"] = args.address

    async def run() -> int:
        client = StdioLanguageClient(args.root or Path.cwd(), options)
        await client.start()
        try:
            uri = client.open(path, text)
            items = await client.inline_completion(uri, line - 1, column - 1)
        finally:
            await client.stop()
        for message in client.messages:
            print(message, file=sys.stderr)
        if not items:
            print("(no suggestion)", file=sys.stderr)
            return 1
        print(
            items[0].insert_text
            if isinstance(items[0].insert_text, str)
            else items[0].insert_text.value
        )
        return 0

    try:
        return asyncio.run(run())
    except Exception as error:  # noqa: BLE001 - one clear line for the user
        logger.error("completion failed: %s", error)
        return 1


def _add_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model", help="prepare the bundled default model (convert once) and print its folder"
    )
    p.add_argument("action", choices=("prepare",))
    p.set_defaults(func=_cmd_model)


def _cmd_model(args: argparse.Namespace) -> int:
    envs.force_offline()
    from serving.model_store import ensure_default_model

    print(ensure_default_model())
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks; each writes its figures to --json too")
    bench = p.add_subparsers(dest="bench", required=True)
    from quill.bench import api, engine, keystrokes, latency, quality, repair

    latency.add_parser(bench)
    engine.add_parser(bench)
    quality.add_parser(bench)
    keystrokes.add_parser(bench)
    from quill.bench import retrieval

    retrieval.add_parser(bench)
    from quill.bench import repair_engine

    repair_engine.add_parser(bench)
    repair.add_parser(bench)
    api.add_parser(bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quill", description="Quill: AI code authoring backend")
    parser.add_argument("--log-level", default=envs.log_level(), help="stderr log level")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_lsp(sub)
    _add_complete(sub)
    from quill import api_search_cli

    api_search_cli.add_parser(sub)
    _add_model(sub)
    _add_bench(sub)
    from quill import indexing

    indexing.add_parser(sub)
    from quill import stats

    stats.add_parser(sub)
    from quill import repair_command

    repair_command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    return int(args.func(args) or 0)
