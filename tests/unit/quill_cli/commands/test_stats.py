from __future__ import annotations

import math
from pathlib import Path

import pytest

from quill_cli.commands.stats import draw_png, histogram_quantile, render, stats_from_metrics_text

METRICS = """\
# TYPE quill_suggestions_shown counter
quill_suggestions_shown_total{language="python",mode="single"} 6.0
quill_suggestions_shown_total{language="go",mode="multi"} 4.0
# TYPE quill_suggestions_accepted counter
quill_suggestions_accepted_total{language="python",mode="single"} 3.0
# TYPE quill_suggestion_chars_accepted counter
quill_suggestion_chars_accepted_total{language="python",mode="single"} 30.0
# TYPE quill_chars_typed counter
quill_chars_typed_total{language="python"} 90.0
# TYPE quill_stage_duration_seconds histogram
quill_stage_duration_seconds_bucket{le="0.1",stage="total"} 2.0
quill_stage_duration_seconds_bucket{le="0.2",stage="total"} 6.0
quill_stage_duration_seconds_bucket{le="+Inf",stage="total"} 10.0
quill_stage_duration_seconds_count{stage="total"} 10.0
quill_stage_duration_seconds_sum{stage="total"} 1.5
"""


def test_histogram_quantile_matches_prometheus_interpolation() -> None:
    buckets = [(0.1, 2.0), (0.2, 6.0), (math.inf, 10.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.175)
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.2)  # in +Inf: the lower bound
    assert math.isnan(histogram_quantile(0.5, []))


def test_stats_from_metrics_text(tmp_path: Path) -> None:
    stats = stats_from_metrics_text(METRICS)
    assert stats.acceptance_rate == pytest.approx(0.3)
    assert stats.share_of_code == pytest.approx(0.25)
    assert stats.latency["total"]["p50"] == pytest.approx(0.175)
    text = render(stats)
    assert "30.0%" in text and "25.0%" in text and "175.0" in text
    chart = tmp_path / "chart.png"
    draw_png(stats, chart, "test")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
