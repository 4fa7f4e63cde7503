"""The harness of `quill bench repair-engine` (the figures come from running the benchmark)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quill_cli.bench.repair_engine import accepts, call_ends, identifiers, run


def test_identifiers_are_the_names_on_a_line() -> None:
    assert identifiers("    return sorted(set(l1) & set(l2))\n") == [
        (4, "return"), (11, "sorted"), (18, "set"), (22, "l1"), (28, "set"), (32, "l2"),
    ]  # fmt: skip


def test_call_ends_are_where_the_decoder_asks_about_calls() -> None:
    line = '    return sum(len(x) for x in f(a, "(")) + g()'
    assert [line[:end][-8:] for end in call_ends(line)] == [
        "m(len(x)", '(a, "(")', 'a, "("))', ")) + g()",
    ]  # fmt: skip


def test_accepts_follows_the_decoder_rule() -> None:
    assert accepts(["th", "thsep"], "th")
    assert accepts([""], "anything")  # "anything goes"
    assert accepts(None, "x")  # unavailable: the decoder accepts
    assert not accepts(["th"], "thsep")
    assert not accepts([], "")


def test_runs_on_real_tasks(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    args = argparse.Namespace(limit=2, seed=1, data=None, deadline=30.0, json=out)
    assert run(args) == 0
    figures = json.loads(out.read_text())
    assert figures["tasks"] == 2 and figures["queries"] > 0 and figures["lines"] == 2
    assert 0.0 <= figures["false_infeasible_rate"] <= 1.0
    assert figures["over_deadline"] == 0
    assert 0.0 <= figures["call_false_rejection_rate"] <= 1.0
    assert figures["false_rejection_rate"] <= 1.0
