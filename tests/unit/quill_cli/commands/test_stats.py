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


RETENTION_METRICS = """\
# TYPE quill_suggestions_shown counter
quill_suggestions_shown_total{language="python",mode="single"} 4.0
# TYPE quill_suggestion_chars_retained counter
quill_suggestion_chars_retained_total{after="30s",language="python",mode="single"} 45.0
quill_suggestion_chars_retained_total{after="30s",language="go",mode="multi"} 15.0
quill_suggestion_chars_retained_total{after="600s",language="python",mode="single"} 20.0
# TYPE quill_suggestion_chars_checked counter
quill_suggestion_chars_checked_total{after="30s",language="python",mode="single"} 60.0
quill_suggestion_chars_checked_total{after="30s",language="go",mode="multi"} 20.0
quill_suggestion_chars_checked_total{after="600s",language="python",mode="single"} 80.0
# TYPE quill_context_suggestions_shown counter
quill_context_suggestions_shown_total{context="none",origin="fresh"} 3.0
quill_context_suggestions_shown_total{context="retrieval",origin="fresh"} 1.0
# TYPE quill_context_suggestions_accepted counter
quill_context_suggestions_accepted_total{context="none",origin="fresh"} 1.0
quill_context_suggestions_accepted_total{context="retrieval",origin="type_ahead"} 1.0
# TYPE quill_context_chars_retained counter
quill_context_chars_retained_total{after="30s",context="none",origin="fresh"} 10.0
quill_context_chars_retained_total{after="30s",context="retrieval",origin="type_ahead"} 30.0
# TYPE quill_context_chars_checked counter
quill_context_chars_checked_total{after="30s",context="none",origin="fresh"} 40.0
quill_context_chars_checked_total{after="30s",context="retrieval",origin="type_ahead"} 40.0
"""


def test_retention_and_context_sources_from_metrics_text() -> None:
    stats = stats_from_metrics_text(RETENTION_METRICS)
    assert stats.retention.rates() == {"30s": 0.75, "600s": 0.25}
    assert list(stats.retention.rates()) == ["30s", "600s"]  # by delay, not as text
    none = stats.by_context["none"]
    both = stats.by_context["retrieval"]
    assert (none.shown, none.accepted, none.acceptance_rate) == (3, 1, pytest.approx(1 / 3))
    assert (both.shown, both.accepted, both.acceptance_rate) == (1, 1, 1.0)
    assert none.retention.rates() == {"30s": 0.25}
    assert both.retention.rates() == {"30s": 0.75}
    assert stats.accepted_by_origin == {"fresh": 1.0, "type_ahead": 1.0}
    text = render(stats)
    assert "retained characters   after 30s 75.0%   after 600s 25.0%" in text
    assert "retrieval" in text and "33.3%" in text
    assert "accepted by origin    fresh 50.0%   type_ahead 50.0%" in text
    summary = stats.as_dict()
    assert summary["by_context"]["none"]["retention_rate"] == {"30s": 0.25}
    assert summary["retention_rate"]["600s"] == 0.25
    # Without those series nothing about them is printed.
    assert "retained" not in render(stats_from_metrics_text(METRICS))
