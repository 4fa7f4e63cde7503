from __future__ import annotations

import pytest

from serving.postprocess import (
    finish_multi_line,
    finish_single_line,
    multi_line_block_end,
    split_blank_line,
    visible_text,
)


@pytest.mark.parametrize(
    ("text", "line_suffix", "expected"),
    [
        ("return a + b", "", "return a + b"),
        ("return a + b\nprint(1)", "", "return a + b"),
        ("a, b)", ")", "a, b"),
        ("a, b):  ", "):", "a, b"),
        ("x = 1   ", "", "x = 1"),
    ],
)
def test_single_line(text: str, line_suffix: str, expected: str) -> None:
    assert finish_single_line(text, line_suffix) == expected


def test_multi_line_after_scope_opener_stops_at_dedent() -> None:
    text = "\n    if n < 2:\n        return n\n    return n\n\ndef g():\n    pass\n"
    assert finish_multi_line(text, "def f(n):") == "\n    if n < 2:\n        return n\n    return n"


def test_multi_line_body_must_be_indented_past_the_opener() -> None:
    assert finish_multi_line("\ndef g():\n    pass", "def f():") == ""


def test_multi_line_on_indented_line_keeps_the_block() -> None:
    text = "x = 1\n    y = 2\n        z = 3\nw = 4"
    assert finish_multi_line(text, "    ") == "x = 1\n    y = 2\n        z = 3"


def test_block_end_is_undecided_until_a_dedented_line_starts() -> None:
    assert multi_line_block_end("\n    return 1\n", "def f():") is None
    assert multi_line_block_end("\n    return 1\n   ", "def f():") is None
    assert multi_line_block_end("\n    return 1\nx", "def f():") == len("\n    return 1")


def test_braces_open_a_scope() -> None:
    text = "\n  return 1;\n}\nint g() {"
    assert finish_multi_line(text, "int f() {") == "\n  return 1;"


def test_split_blank_line_only_on_blank_cursor_lines() -> None:
    assert split_blank_line("def f():\n    ") == ("def f():", "\n    ")
    assert split_blank_line("def f():\n") == ("def f():", "\n")
    assert split_blank_line("    ") == ("", "    ")
    assert split_blank_line("x = ") == ("x = ", "")
    assert split_blank_line("") == ("", "")


def test_visible_text() -> None:
    assert visible_text("  ", "    ") == (None, False)
    assert visible_text("    return", "    ") == ("return", False)
    assert visible_text("\n\n    return", "    ") == ("return", False)
    assert visible_text("print()", "    ") == ("", True)
    assert visible_text("anything", "") == ("anything", False)
    # Cut before the newline: the model must start a new line at the cursor's column.
    assert visible_text("", "\n    ") == (None, False)
    assert visible_text("\n    return x", "\n    ") == ("return x", False)
    assert visible_text("\n\n    return x", "\n    ") == ("return x", False)
    assert visible_text(" + 1", "\n    ") == ("", True)
    assert visible_text("\nreturn", "\n    ") == ("", True)
    assert visible_text("\n    for x in y:\n", "\n") == ("    for x in y:\n", False)


def test_suffix_overlap_is_trimmed() -> None:
    from serving.postprocess import trim_suffix_overlap

    text = "\n    total = 0\n    for x in xs:\n        total += x\n    return total"
    suffix = "\n    return total\n"
    assert (
        trim_suffix_overlap(text, suffix) == "\n    total = 0\n    for x in xs:\n        total += x"
    )
    assert trim_suffix_overlap(text, "") == text
    assert trim_suffix_overlap("return total", "return total") == "return total"  # first line
