"""Helpers shared by the benchmarks: percentiles, the machine description, JSON output, and
`NAME:key=value,...` options."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


def parse_named_options(spec: str, strict: bool = False) -> tuple[str, dict[str, Any]]:
    """`name:key=value,...` (values in JSON) -> (name, options). Strict: a missing name, a key
    without `=` or a value that is not JSON is a ValueError; otherwise such a value stays the
    text it is."""
    name, _, assignments = spec.partition(":")
    if strict and not name:
        raise ValueError(f"{spec!r} has no name")
    options: dict[str, Any] = {}
    for assignment in filter(None, assignments.split(",")):
        key, sep, value = assignment.partition("=")
        if strict and not sep:
            raise ValueError(f"{spec!r}: {assignment!r} is not key=value")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError as error:
            if strict:
                raise ValueError(f"{spec!r}: the value of {key.strip()!r} is not JSON") from error
            options[key.strip()] = value
    return name, options


def summarize_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1e3 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
    }


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 1024**3, 1)
    except (OSError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    print(json.dumps(figures, indent=2))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")
