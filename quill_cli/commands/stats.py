"""`quill stats`: acceptance, retained characters, acceptance and retention by context source,
share of code from suggestions and latency per stage, from a serving /metrics endpoint or from
Prometheus, printed and optionally drawn as a PNG."""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("queue_wait", "prompt_build", "time_to_first_token", "decode", "postprocess", "total",
          "client_end_to_end")  # fmt: skip


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


def _after_key(after: str) -> int:
    """Sort "30s" before "120s"."""
    return int(after.rstrip("s")) if after.rstrip("s").isdigit() else 0


@dataclass
class Retention:
    """Characters still there at each check / characters accepted of the suggestions checked."""

    # after ("30s") -> [retained, checked]
    by_after: dict[str, list[float]] = field(default_factory=dict)

    def add(self, after: str, retained: float, checked: float) -> None:
        pair = self.by_after.setdefault(after, [0.0, 0.0])
        pair[0] += retained
        pair[1] += checked

    def rates(self) -> dict[str, float]:
        ordered = sorted(self.by_after.items(), key=lambda item: _after_key(item[0]))
        return {after: _ratio(retained, checked) for after, (retained, checked) in ordered}


@dataclass
class ContextStats:
    """One context source's (a label of quill_context_*) suggestions."""

    shown: float = 0.0
    accepted: float = 0.0
    retention: Retention = field(default_factory=Retention)

    @property
    def acceptance_rate(self) -> float:
        return _ratio(self.accepted, self.shown)


@dataclass
class Stats:
    shown: float = 0.0
    accepted: float = 0.0
    chars_accepted: float = 0.0
    chars_typed: float = 0.0
    # stage -> {"p50": seconds, "p95": seconds}
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    retention: Retention = field(default_factory=Retention)
    # context label ("none", "retrieval", "open_document+retrieval", ...) -> its counts
    by_context: dict[str, ContextStats] = field(default_factory=dict)
    # origin label -> suggestions accepted
    accepted_by_origin: dict[str, float] = field(default_factory=dict)

    def context(self, label: str) -> ContextStats:
        return self.by_context.setdefault(label, ContextStats())

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.shown if self.shown else math.nan

    @property
    def share_of_code(self) -> float:
        total = self.chars_accepted + self.chars_typed
        return self.chars_accepted / total if total else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "shown": self.shown,
            "accepted": self.accepted,
            "acceptance_rate": self.acceptance_rate,
            "chars_accepted": self.chars_accepted,
            "chars_typed": self.chars_typed,
            "share_of_code_from_suggestions": self.share_of_code,
            "retention_rate": self.retention.rates(),
            "by_context": {
                label: {
                    "shown": c.shown,
                    "accepted": c.accepted,
                    "acceptance_rate": c.acceptance_rate,
                    "retention_rate": c.retention.rates(),
                }
                for label, c in sorted(self.by_context.items())
            },
            "accepted_by_origin": self.accepted_by_origin,
            "latency_s": self.latency,
        }


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile on cumulative (upper bound, count) buckets."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


# Series summed by their labels (after, context, origin) into retention and attribution.
_LABELLED = (
    "quill_suggestion_chars_retained_total",
    "quill_suggestion_chars_checked_total",
    "quill_context_suggestions_shown_total",
    "quill_context_suggestions_accepted_total",
    "quill_context_chars_retained_total",
    "quill_context_chars_checked_total",
)


def _add_labelled(stats: Stats, samples: list[tuple[str, dict[str, str], float]]) -> None:
    """Sum the retention and attribution series into `stats` (samples of _LABELLED)."""
    for name, labels, value in samples:
        after = labels.get("after", "")
        context = labels.get("context", "none")
        if name == "quill_suggestion_chars_retained_total":
            stats.retention.add(after, value, 0.0)
        elif name == "quill_suggestion_chars_checked_total":
            stats.retention.add(after, 0.0, value)
        elif name == "quill_context_suggestions_shown_total":
            stats.context(context).shown += value
        elif name == "quill_context_suggestions_accepted_total":
            stats.context(context).accepted += value
            origin = labels.get("origin", "unspecified")
            stats.accepted_by_origin[origin] = stats.accepted_by_origin.get(origin, 0.0) + value
        elif name == "quill_context_chars_retained_total":
            stats.context(context).retention.add(after, value, 0.0)
        elif name == "quill_context_chars_checked_total":
            stats.context(context).retention.add(after, 0.0, value)


def stats_from_metrics_text(text: str) -> Stats:
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    labelled: list[tuple[str, dict[str, str], float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _LABELLED:
                labelled.append((sample.name, sample.labels, sample.value))
            if sample.name == "quill_stage_duration_seconds_bucket":
                per_stage = buckets.setdefault(sample.labels["stage"], {})
                bound = float(sample.labels["le"])
                per_stage[bound] = per_stage.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_total"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    stats = Stats(
        shown=totals.get("quill_suggestions_shown_total", 0.0),
        accepted=totals.get("quill_suggestions_accepted_total", 0.0),
        chars_accepted=totals.get("quill_suggestion_chars_accepted_total", 0.0),
        chars_typed=totals.get("quill_chars_typed_total", 0.0),
    )
    _add_labelled(stats, labelled)
    for stage, per_stage in buckets.items():
        pairs = list(per_stage.items())
        stats.latency[stage] = {
            "p50": histogram_quantile(0.5, pairs),
            "p95": histogram_quantile(0.95, pairs),
        }
    return stats


def stats_from_prometheus(url: str, window: str) -> Stats:
    def vector(promql: str) -> list[tuple[dict[str, str], float]]:
        query = urllib.parse.urlencode({"query": promql})
        body = json.loads(urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10).read())
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def scalar(promql: str) -> float:
        result = vector(promql)
        return result[0][1] if result else math.nan

    def increase(name: str) -> float:
        value = scalar(f"sum(increase({name}[{window}]))")
        return 0.0 if math.isnan(value) else value

    stats = Stats(
        shown=increase("quill_suggestions_shown_total"),
        accepted=increase("quill_suggestions_accepted_total"),
        chars_accepted=increase("quill_suggestion_chars_accepted_total"),
        chars_typed=increase("quill_chars_typed_total"),
    )
    labelled = [
        (name, labels, value)
        for name in _LABELLED
        for labels, value in vector(f"sum by (after, context, origin) (increase({name}[{window}]))")
    ]
    _add_labelled(stats, labelled)
    for stage in STAGES:
        rate = (
            f'sum by (le) (rate(quill_stage_duration_seconds_bucket{{stage="{stage}"}}[{window}]))'
        )
        p50, p95 = (
            scalar(f"histogram_quantile(0.5, {rate})"),
            scalar(f"histogram_quantile(0.95, {rate})"),
        )
        if not (math.isnan(p50) and math.isnan(p95)):
            stats.latency[stage] = {"p50": p50, "p95": p95}
    return stats


def render(stats: Stats) -> str:
    def pct(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.1%}"

    lines = [
        f"suggestions shown     {stats.shown:,.0f}",
        f"suggestions accepted  {stats.accepted:,.0f}"
        f"   acceptance rate {pct(stats.acceptance_rate)}",
        f"characters accepted   {stats.chars_accepted:,.0f}   typed {stats.chars_typed:,.0f}"
        f"   share of code from suggestions {pct(stats.share_of_code)}",
    ]
    checks = list(stats.retention.rates())
    if checks:
        lines.append(
            "retained characters   "
            + "   ".join(f"after {a} {pct(r)}" for a, r in stats.retention.rates().items())
        )
    if stats.by_context:
        width = max(16, *(len(label) + 1 for label in stats.by_context))
        header = f"by context source{'':<{width - 15}}{'shown':>8} {'accepted':>9} {'rate':>7}"
        lines.append(header + "".join(f" {'kept ' + a:>11}" for a in checks))
        for label, context in sorted(stats.by_context.items(), key=lambda item: -item[1].shown):
            rates = context.retention.rates()
            lines.append(
                f"  {label:<{width}}{context.shown:>8,.0f} {context.accepted:>9,.0f} "
                f"{pct(context.acceptance_rate):>7}"
                + "".join(f" {pct(rates.get(a, math.nan)):>11}" for a in checks)
            )
    if stats.accepted_by_origin:
        total = sum(stats.accepted_by_origin.values())
        lines.append(
            "accepted by origin    "
            + "   ".join(
                f"{origin} {pct(_ratio(count, total))}"
                for origin, count in sorted(stats.accepted_by_origin.items())
            )
        )
    lines.append("latency per stage       p50 ms     p95 ms")
    for stage in STAGES:
        if stage in stats.latency:
            p = stats.latency[stage]
            lines.append(f"  {stage:<20}{p['p50'] * 1e3:>8.1f} {p['p95'] * 1e3:>10.1f}")
    return "\n".join(lines)


def draw_png(stats: Stats, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display here or on servers
    import matplotlib.pyplot as plt

    stages = [s for s in STAGES if s in stats.latency]
    p50 = [stats.latency[s]["p50"] * 1e3 for s in stages]
    p95 = [stats.latency[s]["p95"] * 1e3 for s in stages]
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    positions = range(len(stages))
    axis.barh([p + 0.2 for p in positions], p50, height=0.4, label="p50", color="#4c78a8")
    axis.barh([p - 0.2 for p in positions], p95, height=0.4, label="p95", color="#f58518")
    axis.set_yticks(list(positions), [s.replace("_", " ") for s in stages])
    axis.set_xlabel("milliseconds")
    axis.set_title(
        f"{title}\nacceptance {stats.acceptance_rate:.1%} of {stats.shown:.0f} shown"
        if stats.shown else title
    )  # fmt: skip
    axis.legend()
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="acceptance, retention, context sources, share of code and latency from /metrics "
        "or Prometheus",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--metrics-url", default="http://127.0.0.1:9400/metrics")
    source.add_argument("--prometheus", default=None, help="Prometheus base URL (uses --window)")
    p.add_argument("--window", default="1h", help="PromQL range for --prometheus")
    p.add_argument("--png", type=Path, default=None, help="write a latency-per-stage chart")
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.prometheus:
            stats = stats_from_prometheus(args.prometheus.rstrip("/"), args.window)
            source = f"Prometheus {args.prometheus}, last {args.window}"
        else:
            text = urllib.request.urlopen(args.metrics_url, timeout=10).read().decode()
            stats = stats_from_metrics_text(text)
            source = args.metrics_url
    except OSError as error:
        print(f"cannot read metrics: {error}", file=sys.stderr)
        return 1
    print(f"Quill stats from {source}")
    print(render(stats))
    if args.json:
        args.json.write_text(json.dumps(stats.as_dict(), indent=2) + "\n")
    if args.png:
        draw_png(stats, args.png, "Quill latency per stage")
        print(f"chart written to {args.png}")
    return 0
