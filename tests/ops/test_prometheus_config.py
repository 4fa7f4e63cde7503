"""ops/prometheus and ops/grafana: promtool checks, rule unit tests, and metric names vs serving.

promtool is installed by the project's set-up (Debian's prometheus package): when it is missing
these tests fail rather than skip.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.promql_names import (
    dashboard_expressions,
    exposition_names,
    grafana_to_promql,
    metric_names_in,
    metric_names_used,
    recorded_names,
    rule_expressions,
)

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
PROMETHEUS = OPS / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARD = OPS / "grafana" / "dashboards" / "quill.json"


def promtool_path() -> str:
    """promtool from PATH; a missing promtool fails the calling test (never a skip)."""
    path = shutil.which("promtool")
    assert path, "promtool is not on PATH: install Debian's prometheus package (scripts/setup.sh)"
    return path


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


def test_rule_files_exist() -> None:
    assert [path.name for path in RULE_FILES] == ["quill-alerts.yml", "quill-recording.yml"]
    assert RULE_TESTS, "no promtool unit tests in ops/prometheus/tests"


def test_config_is_valid() -> None:
    promtool = promtool_path()
    result = run(promtool, "check", "config", "ops/prometheus/prometheus.yml")
    assert_ok(result)
    # The config loads both rule files (check config validates them too).
    assert "2 rule files found" in result.stdout


def test_rules_are_valid() -> None:
    promtool = promtool_path()
    assert_ok(run(promtool, "check", "rules", *map(str, RULE_FILES)))


def test_rule_unit_tests_pass() -> None:
    promtool = promtool_path()
    result = run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert_ok(result)
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A unit test with a wrong expectation fails: the passing run above means something."""
    promtool = promtool_path()
    broken = tmp_path / "broken_test.yml"
    broken.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(PROMETHEUS / "rules" / "quill-recording.yml")],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {"series": 'quill_completions_total{outcome="ok"}', "values": "0+3x20"},
                            {
                                "series": 'quill_completions_total{outcome="cancelled"}',
                                "values": "0+1x20",
                            },
                        ],
                        "promql_expr_test": [
                            {
                                "expr": "quill:cancel_rate:5m",
                                "eval_time": "10m",
                                # The right value is 0.25.
                                "exp_samples": [{"labels": "quill:cancel_rate:5m", "value": 0.5}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = run(promtool, "test", "rules", str(broken))
    assert result.returncode != 0, result.stdout
    assert "quill:cancel_rate:5m" in result.stdout + result.stderr


def _unit_test_documents() -> list[dict]:
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in RULE_TESTS]


def test_every_rule_file_is_loaded_by_a_unit_test() -> None:
    loaded = {
        (path.parent / rule_file).resolve()
        for path, document in zip(RULE_TESTS, _unit_test_documents(), strict=True)
        for rule_file in document["rule_files"]
    }
    assert loaded == {path.resolve() for path in RULE_FILES}


def test_every_recording_rule_is_checked_by_a_unit_test() -> None:
    tested_exprs = [
        case["expr"]
        for document in _unit_test_documents()
        for test in document["tests"]
        for case in test.get("promql_expr_test", [])
    ]
    used = set().union(*(metric_names_in(expr) for expr in tested_exprs))
    assert recorded_names(OPS) - used == set()


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert alerts == {
        "QuillCompletionLatencyHigh",
        "QuillEngineDown",
        "QuillServingAbsent",
        "QuillAcceptanceCollapsed",
        "QuillRetentionLow",
    }
    cases = [
        case
        for document in _unit_test_documents()
        for test in document["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested staying silent"


def test_alert_thresholds() -> None:
    """The thresholds the README promises: p95 total > 2s for 10m, engine down for 2m, ..."""
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load((PROMETHEUS / "rules" / "quill-alerts.yml").read_text())[
            "groups"
        ]
        for rule in group["rules"]
    }
    latency = rules["QuillCompletionLatencyHigh"]
    assert re.search(r'p95_5m\{stage="total"\}\s*>\s*2\b', latency["expr"])
    assert latency["for"] == "10m"
    engine = rules["QuillEngineDown"]
    assert (
        "quill_engine_ready == 0" in engine["expr"]
        and 'up{job="quill-serving"} == 0' in (engine["expr"])
    )
    assert engine["for"] == "2m"
    acceptance = rules["QuillAcceptanceCollapsed"]
    assert "quill:acceptance_rate:5m < 0.05" in acceptance["expr"]
    assert "quill:suggestions_shown:rate5m >" in acceptance["expr"]
    assert acceptance["for"] == "30m"
    retention = rules["QuillRetentionLow"]
    assert 'quill:retention_rate:5m{after="600s"} < 0.5' in retention["expr"]
    assert 'quill_suggestion_chars_checked_total{after="600s"}[5m])) > 1' in retention["expr"]
    assert retention["for"] == "1h"
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_scrape_job_matches_serving_default_metrics_address() -> None:
    from quill import envs

    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "quill-serving"  # the alerts select on it
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [envs.DEFAULT_METRICS_ADDRESS]
    assert config["rule_files"] == ["rules/quill-recording.yml", "rules/quill-alerts.yml"]


# --- the dashboard ----------------------------------------------------------------------------


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    """promtool parses every dashboard expression (as the expression of a recording rule)."""
    promtool = promtool_path()
    expressions = dashboard_expressions(OPS)
    assert len(expressions) >= 20
    rules = [
        {"record": f"dashboard_expression_{index}", "expr": grafana_to_promql(expression.expr)}
        for index, expression in enumerate(expressions)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    sources = "\n".join(f"{i}: {e.source}: {e.expr}" for i, e in enumerate(expressions))
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{sources}"


def test_dashboard_shows_what_operators_need() -> None:
    used = set().union(*(metric_names_in(e.expr) for e in dashboard_expressions(OPS)))
    assert {
        "quill:acceptance_rate:5m",
        "quill:acceptance_rate_by_mode:5m",
        "quill:code_share:5m",
        "quill:stage_duration_seconds:p50_5m",
        "quill:stage_duration_seconds:p95_5m",
        "quill:cancel_rate:5m",
        "quill_engine_ready",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "quill:retention_rate:5m",
        "quill:acceptance_rate_by_context:5m",
        "quill:retention_rate_by_context:5m",
        "quill:accepted_share_by_origin:5m",
    } <= used


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "quill-overview"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_grafana_provisioning() -> None:
    provisioning = OPS / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    dashboards = yaml.safe_load((provisioning / "dashboards" / "quill.yml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    # compose.yaml mounts ops/grafana/dashboards at the provider's path.
    compose = yaml.safe_load((OPS / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


# --- metric names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (mode) (rate(foo_total{a="b", c=~"x|y"}[5m])) / on(instance) group_left '
            "bar offset 5m > bool 1e-9",
            {"foo_total", "bar"},
        ),
        (
            "histogram_quantile(0.95, sum without (pod) (rate(h_bucket[$__rate_interval])))",
            {"h_bucket"},
        ),
        (
            "max_over_time(rate(c_total[1m])[10m:30s]) and ignoring (x) vllm:gauge",
            {
                "c_total",
                "vllm:gauge",
            },
        ),
        ('{__name__="named"} + label_replace(m, "dst", "$1", "src", "(.*)")', {"named", "m"}),
        (
            "quill:acceptance_rate:5m < 0.05 unless absent(z) or Inf > NaN",
            {
                "quill:acceptance_rate:5m",
                "z",
            },
        ),
        ('sum(x) by (job) / count(x{job="a"}) * 2e3', {"x"}),
    ],
)
def test_metric_names_in(expr: str, names: set[str]) -> None:
    assert metric_names_in(grafana_to_promql(expr)) == names


def test_metric_names_in_rejects_regex_name_matchers() -> None:
    with pytest.raises(ValueError, match="__name__"):
        metric_names_in('{__name__=~"quill_.*"}')


def test_exposition_names_include_families_without_samples() -> None:
    page = (
        "# HELP quill_c_total A counter.\n# TYPE quill_c_total counter\n"
        "# HELP quill_h A histogram.\n# TYPE quill_h histogram\n"
        "# TYPE g gauge\ng 1\n"
        'vllm:x_total{engine="0"} 3\n'
    )
    names = exposition_names(page)
    assert {"quill_c_total", "quill_h_bucket", "quill_h_sum", "quill_h_count", "g"} <= names
    assert "vllm:x_total" in names
    assert "quill_c" not in names and "quill_h" not in names


def serving_exposition_names() -> set[str]:
    """Names serving's /metrics offers: Quill's registry plus vLLM's metric definitions.

    Quill's come from importing serving.metrics (the default registry renders families without
    samples too). vLLM's come from the installed vLLM's source (vllm/v1/metrics/loggers.py),
    read as text: importing vLLM is slow and registers nothing until an engine starts.
    """
    from prometheus_client import REGISTRY, generate_latest

    import serving.metrics  # noqa: F401  (registers Quill's metrics)

    names = exposition_names(generate_latest(REGISTRY).decode())
    spec = importlib.util.find_spec("vllm")
    assert spec is not None and spec.submodule_search_locations, "vllm is not installed"
    loggers = Path(next(iter(spec.submodule_search_locations))) / "v1" / "metrics" / "loggers.py"
    definitions = re.findall(
        r'_(gauge|counter|histogram)_cls\(\s*name="(vllm:[^"]+)"', loggers.read_text()
    )
    assert len(definitions) > 20, f"vLLM's metric definitions not found in {loggers}"
    page = "".join(f"# TYPE {name} {kind}\n" for kind, name in definitions)
    return names | exposition_names(page)


def test_metric_names_used_are_exported_by_serving() -> None:
    used = metric_names_used(OPS)
    # Sanity: the scan finds Quill's and vLLM's series, and only raw names.
    assert {
        "quill_suggestions_shown_total",
        "vllm:kv_cache_usage_perc",
        "quill_suggestion_chars_retained_total",
        "quill_context_chars_checked_total",
    } <= used
    assert not any(name.startswith("quill:") for name in used)
    assert "up" not in used
    missing = used - serving_exposition_names()
    assert missing == set(), f"dashboard/rules read series serving does not export: {missing}"


def test_metric_names_used_catches_an_unknown_name(tmp_path: Path) -> None:
    shutil.copytree(OPS / "prometheus", tmp_path / "prometheus")
    shutil.copytree(OPS / "grafana", tmp_path / "grafana")
    dashboard = tmp_path / "grafana" / "dashboards" / "quill.json"
    data = json.loads(dashboard.read_text())
    data["panels"][1]["targets"][0]["expr"] = "rate(quill_suggestions_show_total[5m])"
    dashboard.write_text(json.dumps(data))
    assert "quill_suggestions_show_total" in metric_names_used(tmp_path) - (
        serving_exposition_names()
    )


def test_rule_expressions_are_all_found() -> None:
    sources = [expression.source for expression in rule_expressions(OPS)]
    assert "quill-alerts.yml: QuillEngineDown" in sources
    assert "quill-recording.yml: quill:code_share:5m" in sources
    assert "quill-recording.yml: quill:retention_rate_by_context:5m" in sources
    assert len(sources) == 23
