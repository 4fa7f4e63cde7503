from __future__ import annotations

import pytest

from retrieval.chunking import chunk_file

PYTHON = '''import os

LIMIT = 3


def load(path):
    return open(path).read()


class Store:
    """Keeps things."""

    def put(self, key, value):
        self.data[key] = value

    def get(self, key):
        return self.data[key]
'''


def _spans(path: str, text: str, **kwargs: int) -> list[tuple[str, str, int, int]]:
    return [(c.kind, c.name, c.start_line, c.end_line) for c in chunk_file(path, text, **kwargs)]


def test_python_definitions_and_top_level_windows() -> None:
    assert _spans("m.py", PYTHON) == [
        ("window", "", 1, 3),
        ("definition", "load", 6, 7),
        ("definition", "Store", 10, 17),
    ]
    chunks = chunk_file("m.py", PYTHON)
    assert chunks[1].text == "def load(path):\n    return open(path).read()"


def test_a_large_class_becomes_its_header_and_its_methods() -> None:
    assert _spans("m.py", PYTHON, max_lines=5) == [
        ("window", "", 1, 3),
        ("definition", "load", 6, 7),
        ("header", "Store", 10, 11),
        ("definition", "put", 13, 14),
        ("definition", "get", 16, 17),
    ]


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        (
            "a.ts",
            "import x from 'y';\nexport function foo(a: number) {\n  return a;\n}\n"
            "class Bar {\n  baz() { return 2; }\n}\n",
            [("window", "", 1, 1), ("definition", "foo", 2, 4), ("definition", "Bar", 5, 7)],
        ),
        (
            "main.go",
            "package main\n\nfunc main() {\n}\n\ntype T struct{ a int }\n\n"
            "func (t T) M() int { return t.a }\n",
            [
                ("window", "", 1, 1),
                ("definition", "main", 3, 4),
                ("definition", "T", 6, 6),
                ("definition", "M", 8, 8),
            ],
        ),
        (
            "lib.rs",
            "struct A { x: i32 }\nimpl A {\n    fn new() -> A { A { x: 1 } }\n}\nfn main() {}\n",
            [("definition", "A", 1, 1), ("definition", "A", 2, 4), ("definition", "main", 5, 5)],
        ),
        (
            "add.c",
            "#include <stdio.h>\nint add(int a, int b) {\n  return a + b;\n}\n",
            [("window", "", 1, 1), ("definition", "add", 2, 4)],
        ),
        (
            "Main.java",
            "class Main {\n  int twice(int x) { return 2 * x; }\n}\n",
            [("definition", "Main", 1, 3)],
        ),
    ],
)
def test_other_grammars(path: str, text: str, expected: list[tuple[str, str, int, int]]) -> None:
    assert _spans(path, text) == expected


def test_languages_without_a_grammar_get_overlapping_windows() -> None:
    text = "\n".join(f"x{i} = {i}" for i in range(100))
    assert _spans("conf.lua", text) == [
        ("window", "", 1, 40),
        ("window", "", 31, 70),
        ("window", "", 61, 100),
    ]


def test_blank_and_broken_files() -> None:
    assert chunk_file("empty.py", "\n\n   \n") == []
    broken = chunk_file("broken.py", "def f(:\n    return (\n")
    assert broken and broken[0].start_line == 1
