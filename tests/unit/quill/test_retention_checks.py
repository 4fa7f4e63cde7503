"""The check delays both sides agree on, and what makes a list of them unusable."""

from __future__ import annotations

import pytest

from lsp_server.settings import parse_settings
from quill.retention_checks import DEFAULT_CHECKS_S, after_label, check_problem


def test_the_default_checks_are_allowed() -> None:
    assert check_problem(list(DEFAULT_CHECKS_S)) is None
    assert check_problem([]) is None  # checks off
    assert after_label(600) == "600s"


@pytest.mark.parametrize(
    ("checks", "problem"),
    [
        ([30, 45], "[45] are not check delays"),
        ([120, 30], "distinct and ascending"),
        ([30, 30], "distinct and ascending"),
        ([1, 2, 5, 10, 15, 30], "at most 5"),
    ],
)
def test_unusable_checks_are_named(checks: list[int], problem: str) -> None:
    reason = check_problem(checks)
    assert reason is not None and problem in reason


def test_the_setting_is_a_list_of_whole_numbers() -> None:
    settings, problems = parse_settings({"retentionChecksS": [1, 2]})
    assert problems == [] and settings.retention_checks_s == [1, 2]
    for bad in ("30", [30.5], [True], 30):
        settings, problems = parse_settings({"retentionChecksS": bad})
        assert settings.retention_checks_s == list(DEFAULT_CHECKS_S), bad
        assert len(problems) == 1 and "retentionChecksS" in problems[0], bad
    settings, problems = parse_settings({"contextOpenDocuments": False, "contextRecentEdits": 0})
    assert settings.context_open_documents is False and settings.context_recent_edits is True
    assert len(problems) == 1 and "contextRecentEdits" in problems[0]
