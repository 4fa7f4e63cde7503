"""The quality benchmark's scoring: the canonical solution passes, a wrong one fails."""

from __future__ import annotations

import pytest

from quill_cli.bench.quality import SETS, default_data_dir, exact_match, load_tasks, passes


@pytest.fixture(scope="module")
def tasks():  # type: ignore[no-untyped-def]
    path = default_data_dir() / SETS["single_line"][0]
    assert path.is_file(), f"missing benchmark data at {path}"
    return load_tasks(path, limit=3, seed=0)


def test_sampling_is_deterministic(tasks) -> None:  # type: ignore[no-untyped-def]
    again = load_tasks(default_data_dir() / SETS["single_line"][0], limit=3, seed=0)
    assert [t.task_id for t in again] == [t.task_id for t in tasks]


def test_canonical_passes_and_a_wrong_line_fails(tasks) -> None:  # type: ignore[no-untyped-def]
    task = tasks[0]
    canonical = task.canonical.rstrip("\n")
    assert passes(task, canonical)
    indent = canonical[: len(canonical) - len(canonical.lstrip())]
    assert not passes(task, indent + "raise SystemExit(3)")
    assert exact_match(canonical + "  ", task.canonical)
    assert not exact_match("pass", task.canonical)


def test_a_hanging_candidate_times_out(tasks) -> None:  # type: ignore[no-untyped-def]
    task = tasks[0]
    indent = task.canonical[: len(task.canonical) - len(task.canonical.lstrip())]
    assert not passes(task, indent + "while True: pass", timeout_s=1.0)
