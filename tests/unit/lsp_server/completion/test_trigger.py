"""Single- vs multi-line decisions (CodeCompose's rule) across languages, with tree-sitter."""

from __future__ import annotations

import pytest

from lsp_server.completion.trigger import choose_mode
from lsp_server.cursor_context import CursorContext
from quill.treesitter import parser_for
from quill.v1 import quill_pb2 as pb

SINGLE, MULTI = pb.COMPLETION_MODE_SINGLE_LINE, pb.COMPLETION_MODE_MULTI_LINE
CURSOR = "‸"


def context(text: str) -> CursorContext:
    """A cursor context from text with one ‸ marking the cursor."""
    prefix, suffix = text.split(CURSOR)
    line_start = prefix.rfind("\n") + 1
    line_end = suffix.find("\n")
    return CursorContext(
        prefix=prefix,
        suffix=suffix,
        line_before=prefix[line_start:],
        line_after=suffix if line_end < 0 else suffix[:line_end],
        offset=len(prefix),
    )


CASES = [
    # (language, text with cursor, expected)
    ("python", "def f(x):‸", MULTI),
    ("python", "class A:‸\n\nx = 1\n", MULTI),
    ("python", "if x > 1:‸\n    pass\n", MULTI),
    ("python", "x = compute(a, ‸)", SINGLE),  # inside a call
    ("python", "x = compute(‸", SINGLE),  # after an opening parenthesis
    ("python", "y = data[1:‸", SINGLE),  # a slice, not a scope
    ("python", "d = {‸", SINGLE),  # a dict literal
    ("python", "x = 1‸", SINGLE),  # mid-statement
    ("python", "def f():\n    x = 1\n    ‸\n", MULTI),  # empty line at the end of a scope
    ("python", "def f():\n    x = 1\n    ‸\n    return x\n", SINGLE),  # code below in the block
    (
        "python",
        "def f():\n    return 1\n‸\n\ndef g():\n    pass\n",
        MULTI,
    ),  # between top-level defs
    ("python", "def f(x):‸  # comment", SINGLE),  # text after the cursor
    ("javascript", "function f(a) {‸", MULTI),
    ("javascript", "const o = {‸", SINGLE),  # an object literal
    ("javascript", "if (a) {‸\n}\n", MULTI),
    ("typescript", "class A {‸", MULTI),
    ("typescript", "const x: number = f(‸", SINGLE),
    ("go", "func main() {‸", MULTI),
    ("go", "for i := 0; i < n; i++ {‸", MULTI),
    ("rust", "fn main() {‸", MULTI),
    ("rust", "impl Point {‸", MULTI),
    ("java", "class A {\n    void f() {‸", MULTI),
    ("c", "int main(void) {‸", MULTI),
    ("c", "int a[] = {‸", SINGLE),  # an initializer
    ("cpp", "struct S {‸", MULTI),
    ("cpp", "    if (x) {\n        y();\n    ‸\n    }\n", MULTI),  # before a closing brace
]


@pytest.mark.parametrize(("language", "text", "expected"), CASES)
def test_mode(language: str, text: str, expected: int) -> None:
    assert parser_for(language) is not None, f"grammar for {language} should be installed"
    assert choose_mode("auto", language, context(text)) == expected


def test_settings_force_a_mode() -> None:
    assert choose_mode("single", "python", context("def f():‸")) == SINGLE
    assert choose_mode("multi", "python", context("x = 1‸")) == MULTI


def test_no_grammar_falls_back_to_indentation() -> None:
    assert parser_for("cobol") is None
    assert choose_mode("auto", "cobol", context("PROCEDURE DIVISION:‸")) == MULTI
    assert choose_mode("auto", "", context("x = 1‸")) == SINGLE


def test_unparseable_file_still_decides() -> None:
    broken = "def f(:\n  )))) [[[ \x00 \ud800\nif x:‸"
    assert choose_mode("auto", "python", context(broken)) in (SINGLE, MULTI)
