"""Serving's Prometheus counts, read in-process (the tests' serving runs in the test process)."""

from __future__ import annotations

from prometheus_client import REGISTRY


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def suggestions_counted(language: str = "python", mode: str = "single") -> tuple[float, float]:
    """(shown, accepted) suggestions serving has counted for these labels."""
    labels = {"language": language, "mode": mode}
    return (
        metric("quill_suggestions_shown_total", **labels),
        metric("quill_suggestions_accepted_total", **labels),
    )
