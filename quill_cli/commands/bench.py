"""`quill bench ...`: one module per benchmark in quill_cli/bench/."""

from __future__ import annotations

import argparse

from quill_cli.bench import (
    api,
    engine,
    latency,
    load,
    quality,
    repair,
    repair_engine,
    retrieval,
    typing,
    workspaces,
)

BENCHMARKS = (
    latency,
    engine,
    quality,
    typing,
    load,
    retrieval,
    workspaces,
    repair_engine,
    repair,
    api,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks; each writes its figures to --json too")
    bench = p.add_subparsers(dest="bench", required=True)
    for benchmark in BENCHMARKS:
        benchmark.add_parser(bench)
