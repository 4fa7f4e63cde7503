"""Which metric names the ops/ dashboards and rules read, and which names a /metrics page offers.

Reusable by any test that holds a metrics endpoint::

    from tests.ops.promql_names import exposition_names, metric_names_used

    used = metric_names_used(ROOT / "ops")          # e.g. {"quill_suggestions_shown_total", ...}
    offered = exposition_names(metrics_page_text)    # the text of GET /metrics
    assert used <= offered, sorted(used - offered)

``metric_names_used`` returns names exactly as they appear on a /metrics page in the text format:
counters with ``_total``, histogram series with ``_bucket`` / ``_sum`` / ``_count`` (whatever the
expressions select). It leaves out the names the recording rules define (``quill:...``) and the
series Prometheus makes itself (``up``, ``scrape_*``, ``ALERTS``...), which no exporter serves.

``exposition_names`` returns every sample name each metric family on the page can have, from its
``# TYPE`` line, so a labelled counter or histogram that has not been incremented yet (it has a
``# TYPE`` line but no samples) still counts as offered.

The PromQL scan is a tokenizer, not a full parser (Python has no PromQL parser and promtool 2.42
has no parse command): it drops string literals, label matchers, range and subquery brackets,
grouping clauses (``by``, ``without``, ``on``, ``ignoring``, ``group_left``, ``group_right``),
function calls, keywords and numbers; what is left is metric names. Syntax itself is checked by
promtool (tests/ops/test_prometheus_config.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

# Series Prometheus synthesises itself; no exporter serves them.
PROMETHEUS_SYNTHETIC = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r"__name__\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_FUNCTION = re.compile(r"(?<![\w:])[a-zA-Z_][\w]*\s*(?=\()")
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")

_RULES_GLOB = "prometheus/rules/*.yml"
_DASHBOARDS_GLOB = "grafana/dashboards/*.json"


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it comes from (file and rule or panel)."""

    source: str
    expr: str


def metric_names_in(expr: str) -> set[str]:
    """The metric names one PromQL expression selects (recording rule names included).

    Raises ValueError for a ``__name__`` matcher other than ``=``, whose names cannot be listed.
    """
    names: set[str] = set()
    for match in _NAME_MATCHER.finditer(expr):
        operator, literal = match.groups()
        if operator != "=":
            raise ValueError(f"cannot list the metric names of {match.group(0)!r} in {expr!r}")
        names.add(literal[1:-1])
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    # Subqueries may nest brackets inside brackets: strip innermost first until none are left.
    while _BRACKETS.search(text):
        text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _FUNCTION.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, so Prometheus can parse it.

    Interval variables ($__rate_interval, $__interval, $__range...) become ``5m``; any other
    variable, which can only sit inside a label matcher's string, becomes ``x``.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(0).strip("${}[]").split(":")[0]
        return "5m" if name.startswith("__") else "x"

    return _GRAFANA_VARIABLE.sub(replace, expr)


def rule_expressions(ops_dir: Path) -> list[Expression]:
    """Every expression of every recording and alerting rule under ops/prometheus/rules."""
    found = []
    for path in sorted(ops_dir.glob(_RULES_GLOB)):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule.get("alert")
                found.append(Expression(f"{path.name}: {name}", str(rule["expr"])))
    return found


def recorded_names(ops_dir: Path) -> set[str]:
    """The series names the recording rules under ops/prometheus/rules define."""
    names: set[str] = set()
    for path in sorted(ops_dir.glob(_RULES_GLOB)):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def _panel_expressions(node: object, where: str) -> Iterator[Expression]:
    if isinstance(node, dict):
        title = node.get("title", where) if "targets" in node else where
        for target in node.get("targets", []) if isinstance(node.get("targets"), list) else []:
            if isinstance(target, dict) and target.get("expr"):
                yield Expression(f"{title} [{target.get('refId', '?')}]", target["expr"])
        for key, value in node.items():
            if key != "targets":
                yield from _panel_expressions(value, title)
    elif isinstance(node, list):
        for item in node:
            yield from _panel_expressions(item, where)


def _variable_expressions(dashboard: dict) -> Iterator[Expression]:
    """Expressions inside query variables: label_values(EXPR, label) and query_result(EXPR)."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        query = (query or "").strip()
        inner = re.fullmatch(r"(label_values|query_result)\((.*)\)", query, re.DOTALL)
        if inner is None:
            continue
        function, arguments = inner.groups()
        if function == "label_values":
            expr = arguments.rpartition(",")[0] if "," in arguments else ""
        else:
            expr = arguments
        if expr.strip():
            yield Expression(f"variable {variable.get('name')}", expr.strip())


def dashboard_expressions(ops_dir: Path) -> list[Expression]:
    """Every panel target expression and query variable of the dashboards in ops/grafana."""
    found = []
    for path in sorted(ops_dir.glob(_DASHBOARDS_GLOB)):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for expression in [
            *_panel_expressions(dashboard.get("panels", []), path.name),
            *_variable_expressions(dashboard),
        ]:
            found.append(Expression(f"{path.name}: {expression.source}", expression.expr))
    return found


def metric_names_used(ops_dir: Path) -> set[str]:
    """Metric names the dashboards and rules under ``ops_dir`` need from serving's /metrics.

    ``ops_dir`` is the repository's ops/ folder. The result excludes the recording rules' own
    names and Prometheus's synthetic series; see the module docstring.
    """
    names: set[str] = set()
    for expression in [*rule_expressions(ops_dir), *dashboard_expressions(ops_dir)]:
        names |= metric_names_in(grafana_to_promql(expression.expr))
    return names - recorded_names(ops_dir) - PROMETHEUS_SYNTHETIC


_SUFFIXES_BY_TYPE = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exposition_names(text: str) -> set[str]:
    """Every sample name the metric families of a /metrics page (text format) can have.

    Families come from the ``# TYPE`` lines, so families without samples yet are included; any
    sample line's own name is included too.
    """
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) < 4:
                continue
            family, kind = parts[2], parts[3]
            suffixes = _SUFFIXES_BY_TYPE.get(kind, ("",))
            if kind == "counter" and family.endswith("_total"):
                family = family.removesuffix("_total")
            names.update(family + suffix for suffix in suffixes)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
