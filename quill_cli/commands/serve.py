"""`quill serve`: the serving layer (gRPC, the engine, /metrics), until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quill import envs
from quill_cli.config_flags import add_config_flags, config_from_flags

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


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from serving.config import ServingConfig

    add_config_flags(parser, ServingConfig)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the serving layer (gRPC + vLLM + /metrics)")
    p.add_argument(
        "--model",
        default=None,
        help="bundled default (smollm2-135m), a local folder or a HF id in the local cache",
    )
    p.add_argument(
        "--engine-arg",
        action="append",
        type=_parse_engine_arg,
        default=[],
        metavar="KEY=VALUE",
        help="any other vLLM AsyncEngineArgs field, repeatable",
    )
    p.add_argument(
        "--engine",
        default="vllm",
        metavar="vllm|simulated[:ttft_ms=N,tpot_ms=N,max_seqs=N]",
        help="vllm (default). simulated: NOT FOR PRODUCTION, tests and benchmarks only: no model "
        "runs, tokens copied from the prompt stream at a GPU's pace (docs/benchmarks.md)",
    )
    # Every other flag is a field of serving/config.py, documented there (added when `serve`
    # is the command, see DeferredFlagsParser).
    p.defer(_add_config_flags)
    p.set_defaults(func=run)


def _config(args: argparse.Namespace, model: str, bundled: bool) -> Any:
    from serving.config import ServingConfig
    from serving.model_store import DEFAULT_MODEL

    return config_from_flags(
        ServingConfig,
        args,
        {
            "engine.model": model,
            "engine.served_model_name": getattr(args, "engine.served_model_name")
            or (DEFAULT_MODEL if bundled else None),
            "engine.vllm_log_level": "DEBUG" if args.log_level.upper() == "DEBUG" else "WARNING",
            "engine.extra_engine_args": dict(args.engine_arg),
        },
    )


def _engine_choice(spec: str) -> tuple[str, dict[str, Any]]:
    from quill_cli.bench.report import parse_named_options

    name, options = parse_named_options(spec, strict=True)
    if name not in ("vllm", "simulated") or (name == "vllm" and options):
        raise ValueError(f"--engine wants vllm or simulated[:key=value,...], got {spec!r}")
    return name, options


def _engine_starter(args: argparse.Namespace, config: Any) -> Callable[[], Engine]:
    """What `serve` calls to start the engine `--engine` names (ValueError: a bad --engine)."""
    kind, options = _engine_choice(args.engine)
    if kind == "simulated":
        from serving.engine.simulated import SimulatedEngine, SimulatedPace

        pace = SimulatedPace.from_options(options)
        engine = config.engine
        return lambda: SimulatedEngine.start(engine.model, pace, engine.served_model_name)
    from serving.engine.vllm_engine import VllmEngine

    return lambda: VllmEngine.start(config.engine)


def run(args: argparse.Namespace) -> int:
    envs.force_offline()
    from serving.fim import choose_template
    from serving.model_store import DEFAULT_MODEL, ModelNotFoundError, resolve_model

    try:
        model = resolve_model(args.model)
        choose_template(getattr(args, "completion.fim_template"), model)
    except (ModelNotFoundError, ValueError) as error:
        logger.error("%s", error)
        return 2
    bundled = args.model in (None, DEFAULT_MODEL)
    try:
        config = _config(args, model, bundled)
        start_engine = _engine_starter(args, config)
    except ValueError as error:  # a cap that is not positive, a bad --engine
        logger.error("%s", error)
        return 2
    from serving.auth import TokenFileError
    from serving.server import serve

    try:
        asyncio.run(serve(config, start_engine))
    except (OSError, TokenFileError) as error:
        logger.error("%s", error)
        return 1
    gc.collect()  # finalize engine objects before interpreter teardown
    return 0
