"""`quill bench engine`: how fast the engine itself is under different engine settings.

Each setting (`--setting NAME:key=value,...`, keys of `serving.config.EngineConfig` such as
`dtype` and `enforce_eager`) starts its own engine, exactly as `quill serve` would, in a fresh
process (vLLM's compilation settings are per process), and measures on prompts cut from a
real source file:

- prefill: time to the first token of a fresh prompt of `--prompt-tokens` tokens (no prefix
  cache hit), one request alone and `--streams` at once;
- decode: milliseconds per further token, alone and with `--streams` at once;
- start: seconds from nothing to an engine that answers (compilation included).

Settings take turns round after round (`--rounds`), so drift on a shared machine hits all of
them; each figure is the median over rounds, with ratios to the first setting.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path
from typing import Any

from quill_cli.bench.report import machine_info, parse_named_options, write_json

DEFAULT_SETTINGS = (
    'float32-eager:dtype="float32",enforce_eager=true',
    "auto-eager:enforce_eager=true",
    "auto-compiled:",
)
# A real file to cut prompts from (the standard library is always there).
SOURCE = Path(sysconfig.get_paths()["stdlib"]) / "argparse.py"


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("engine", help="engine speed (prefill, decode, start) per setting")
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="EngineConfig fields (JSON values); repeatable; default: float32 eager, "
        "auto eager, auto compiled",
    )
    p.add_argument("--model", default=None, help="default: the bundled model")
    p.add_argument("--prompt-tokens", type=int, nargs="+", default=[400, 1500])
    p.add_argument("--max-tokens", type=int, default=24, help="tokens generated per request")
    p.add_argument("--streams", type=int, default=3, help="requests at once")
    p.add_argument("--samples", type=int, default=3, help="requests alone per prompt length")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def parse_setting(spec: str) -> tuple[str, dict[str, Any]]:
    """`name:key=value,...` (values in JSON, keys EngineConfig fields) -> (name, fields)."""
    try:
        name, fields = parse_named_options(spec, strict=True)
    except ValueError as error:
        raise ValueError(f"setting {error}") from error
    from serving.config import EngineConfig

    # The model is the run's (--model), the same for every setting.
    allowed = {f.name for f in dataclasses.fields(EngineConfig)} - {"model"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"setting {spec!r}: not an engine setting: {', '.join(sorted(unknown))}")
    return name, fields


def run(args: argparse.Namespace) -> int:
    try:
        settings = [parse_setting(s) for s in (args.setting or DEFAULT_SETTINGS)]
    except ValueError as error:
        print(f"quill bench engine: {error}", file=sys.stderr)
        return 2
    raw: dict[str, list[dict[str, float]]] = {name: [] for name, _ in settings}
    for round_number in range(args.rounds):
        for name, fields in settings:
            raw[name].append(_measure_in_child(fields, args))
            print(f"round {round_number + 1}: {name} done", file=sys.stderr)
    first = settings[0][0]
    figures: dict[str, Any] = {"settings": {}}
    for name, fields in settings:
        keys = raw[name][0].keys()
        medians = {key: round(statistics.median(r[key] for r in raw[name]), 1) for key in keys}
        figures["settings"][name] = {"fields": fields, **medians}
    figures["ratios_to_first"] = {
        name: {
            key: round(value / figures["settings"][first][key], 3)
            for key, value in figures["settings"][name].items()
            if key != "fields" and figures["settings"][first].get(key)
        }
        for name, _ in settings[1:]
    }
    figures.update(
        rounds=args.rounds,
        streams=args.streams,
        max_tokens=args.max_tokens,
        model=args.model or "smollm2-135m",
        machine=machine_info(),
    )
    write_json(args.json, figures)
    return 0


def _measure_in_child(fields: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    job = {
        "fields": fields,
        "model": args.model,
        "prompt_tokens": args.prompt_tokens,
        "max_tokens": args.max_tokens,
        "streams": args.streams,
        "samples": args.samples,
    }
    done = subprocess.run(
        [sys.executable, "-m", "quill_cli.bench.engine", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"engine setting {fields} failed:\n{done.stderr[-4000:]}")
    result: dict[str, float] = json.loads(lines[-1])
    return result


async def _measure(job: dict[str, Any]) -> dict[str, float]:
    """In the child: start the engine as serving does, then time prefill and decode."""
    from quill import envs
    from serving.config import EngineConfig
    from serving.engine.base import GenerationRequest
    from serving.engine.vllm_engine import VllmEngine
    from serving.model_store import resolve_model

    envs.force_offline()
    started = time.perf_counter()
    engine = VllmEngine.start(EngineConfig(model=resolve_model(job["model"]), **job["fields"]))
    figures = {"start_s": time.perf_counter() - started}
    tokens = engine.encode(SOURCE.read_text(encoding="utf-8"))
    cursor = 0

    def fresh_prompt(length: int) -> list[int]:
        # Each prompt starts at a new place of the file: no prefix cache hit beyond a block.
        nonlocal cursor
        cursor = (cursor + 997) % max(1, len(tokens) - length)
        return tokens[cursor : cursor + length]

    async def one(prompt: list[int]) -> tuple[float, float]:
        request = GenerationRequest(
            request_id=uuid.uuid4().hex,
            prompt_token_ids=tuple(prompt),
            max_tokens=job["max_tokens"],
            temperature=0.0,
            ignore_eos=True,
        )
        asked = time.perf_counter()
        arrivals: list[float] = []
        generated = 0
        async for out in engine.generate(request):
            generated += out.new_token_count
            arrivals.append(time.perf_counter())
        first = arrivals[0] - asked
        per_token = (arrivals[-1] - arrivals[0]) / max(1, generated - 1)
        return first * 1e3, per_token * 1e3

    try:
        await one(fresh_prompt(64))  # warm-up
        for length in job["prompt_tokens"]:
            alone = [await one(fresh_prompt(length)) for _ in range(job["samples"])]
            figures[f"prefill_{length}_ms"] = statistics.median(a[0] for a in alone)
            figures[f"decode_{length}_ms_per_token"] = statistics.median(a[1] for a in alone)
            together = await asyncio.gather(
                *(one(fresh_prompt(length)) for _ in range(job["streams"]))
            )
            streams = job["streams"]
            figures[f"prefill_{length}_x{streams}_ms"] = statistics.median(t[0] for t in together)
            figures[f"decode_{length}_x{streams}_ms_per_token"] = statistics.median(
                t[1] for t in together
            )
    finally:
        engine.shutdown()
    return figures


if __name__ == "__main__":
    # The child: one setting, measured, printed as one JSON line.
    print(json.dumps(asyncio.run(_measure(json.loads(sys.argv[1])))), flush=True)
