"""Syntax as guidance: statement ends checked in the file, block openers kept, regions of
several lines and insertion points."""

from __future__ import annotations

import pytest

from serving.repair.prompt import Region
from serving.repair.validity import SyntaxCheck, opens_block, prefix_error

LOOP = "def f(arr):\n    for x in arr:\n        print(x)\n    return arr\n"


def region(text: str, start: int, end: int) -> Region:
    return Region(tuple(text.split("\n")), start, end)


@pytest.mark.parametrize(
    ("source", "broken"),
    [
        ("def f(a):\n    for x in a:", False),  # an open block: incomplete, not wrong
        ("def f(a):\n    return (a +", False),  # an open bracket
        ("def f(a):\n    try:\n        y = 1", False),  # `except` may still come
        ("def f(a):\n    return a a", True),
        ("def f(a):\n    return a\n        x = 1", True),  # unexpected indent
        ("def f(a):\n    else:", True),
    ],
)
def test_prefix_check_tells_incomplete_from_wrong(source: str, broken: bool) -> None:
    assert (prefix_error(source) is not None) is broken


@pytest.mark.parametrize(
    ("line", "verdict"),
    [
        ("    for", None),  # the word may go on (`format`)
        ("    ret", False),  # no block keyword starts like this
        ("    for ", True),
        ("    else:", True),
        ("    return arr", False),
        ("    (a", False),
        ("    ", None),
    ],
)
def test_opens_block_decides_once_the_first_word_is_complete(
    line: str, verdict: bool | None
) -> None:
    assert opens_block(line) is verdict


def test_a_block_opener_region_stays_a_block_opener() -> None:
    loop = region(LOOP, 1, 1)
    assert loop.opens_block
    check = SyntaxCheck(loop, "python")
    assert check.feasible("   ", " for")  # not decided yet
    assert not check.feasible("   ", " return")  # `return` never opens the loop's body
    assert not check.feasible("    return arr", "\n")
    assert check.feasible("    for x in arr", ":\n")
    assert not check.feasible("    for x in arr", "\n")  # the colon is missing
    assert check.pruned == 3


def test_a_plain_statement_region_may_not_open_a_block() -> None:
    statement = region(LOOP, 3, 3)
    assert not statement.opens_block
    check = SyntaxCheck(statement, "python")
    assert check.feasible("    return", " arr\n")
    assert not check.feasible("    if arr", ":\n")  # nothing indented follows


def test_several_lines_are_checked_at_each_statement_end() -> None:
    body = region(LOOP, 1, 2)
    check = SyntaxCheck(body, "python")
    # The first line completes a prefix that can still go on (an open block).
    assert check.feasible("    for y in arr", ":\n")
    assert not check.feasible("    for y in arr", " arr\n")
    # The last line: the whole file must parse.
    assert check.feasible("    for y in arr:\n        print", "(y)\n")
    assert not check.feasible("    for y in arr:\n        print", "(y))\n")


def test_an_insertion_point_takes_the_indentation_of_the_block_it_goes_into() -> None:
    text = "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"
    after_loop_header = Region.insertion_after(tuple(text.split("\n")), 2)
    assert after_loop_header.is_insertion and after_loop_header.original == ""
    assert after_loop_header.indentation == "        "
    assert after_loop_header.line_count == 1
    patched = after_loop_header.splice("        print(x)")
    assert patched.split("\n")[3] == "        print(x)"
    assert patched.split("\n")[4] == "        total += x"
    after_return = Region.insertion_after(tuple(text.split("\n")), 4)
    assert after_return.indentation == "    "
    check = SyntaxCheck(Region.insertion_after(tuple(text.split("\n")), 1), "python")
    assert check.feasible("    total", " = 1\n")
    assert not check.feasible("    total", " = = 1\n")


def test_other_languages_are_not_checked_while_decoding() -> None:
    check = SyntaxCheck(region("fn main() {\n    x\n}\n", 1, 1), "rust")
    assert check.feasible("    x", " = = ;\n")


def test_a_large_file_is_checked_in_the_statement_that_holds_the_region() -> None:
    # 1 MB of helpers before the loop: parsing all of it at every statement end would hold
    # serving's event loop; the check reads the enclosing function only, and judges the same.
    helpers = "".join(f"def helper_{n}(x):\n    return x + {n}\n\n\n" for n in range(25_000))
    text = helpers + LOOP
    line = text.count("\n", 0, len(helpers)) + 1  # the loop header
    check = SyntaxCheck(region(text, line, line), "python")
    assert len(check._region.lines) < 10
    assert not check.feasible("    return arr", "\n")
    assert check.feasible("    for x in arr", ":\n")
    assert not check.feasible("    for x in arr", "\n")
    assert check.pruned == 2
