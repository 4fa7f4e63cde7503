"""The Jedi completion engine on real snippets (real Jedi, the venv's own Python environment)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from lsp_server.repair.jedi_oracle import (
    JediOracle,
    default_python,
    lexical_state,
)
from lsp_server.repair.name_oracle import NameOracle

# Generous: the first call loads the stubs of the standard library.
DEADLINE_S = 30.0

LOCAL_CLASS = """\
class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def peek(self):
        return self.items[-1]


def use():
    stack = Stack()
    stack.pu
"""


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    engine = JediOracle(python=sys.executable, path="/tmp/quill_jedi_test.py")
    yield engine
    engine.close()


def _end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1])


async def _at_end(engine: JediOracle, text: str) -> list[str] | None:
    line, column = _end_of(text)
    return await engine.continuations(text, line, column, DEADLINE_S)


def test_is_a_completion_engine() -> None:
    assert isinstance(JediOracle(python=sys.executable), NameOracle)


async def test_attribute_of_a_module(engine) -> None:  # type: ignore[no-untyped-def]
    result = await _at_end(engine, "import os\nos.pa")
    assert result is not None
    assert "th" in result  # os.path
    assert "thsep" in result
    # Jedi matches case-insensitively (os.PathLike); `os.paThLike` would not exist.
    assert not any(rest.startswith("thL") for rest in result)


async def test_complete_name_includes_empty_continuation(engine) -> None:  # type: ignore[no-untyped-def]
    result = await _at_end(engine, "import os\nos.path")
    assert result is not None
    assert "" in result and "sep" in result


async def test_method_of_a_local_class(engine) -> None:  # type: ignore[no-untyped-def]
    text = LOCAL_CLASS.rstrip("\n")
    assert await _at_end(engine, text) == ["sh"]


async def test_a_name_that_does_not_exist_is_infeasible(engine) -> None:  # type: ignore[no-untyped-def]
    assert await _at_end(engine, "import os\nos.no_such_thin") == []
    assert await _at_end(engine, "def f(values):\n    return sorted(valuez") == []
    text = LOCAL_CLASS.rstrip("\n") + "ll"  # stack.pull: Stack has no such method
    assert await _at_end(engine, text) == []


async def test_keyword_argument_is_an_identifier(engine) -> None:  # type: ignore[no-untyped-def]
    assert await _at_end(engine, "sorted([2, 1], ke") == ["y"]


async def test_keywords_jedi_leaves_out_are_offered(engine) -> None:  # type: ignore[no-untyped-def]
    result = await _at_end(engine, "def f(xs):\n    return sorted(xs, key=l")
    assert result is not None and "ambda" in result


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("def f(xs):\n    return [x for x in xs if x", ""),  # Jedi misses it: brackets open
        ("def f(lst):\n    return [lst[i] for i in range(3) if lst[i", ""),
        ("def f(m, xs):\n    return sorted(xs, key=lambda item: m[ite", "m"),
        ("def f(ps):\n    return [a for (a, b) in ps if b", ""),
    ],
)
async def test_names_bound_earlier_on_the_line_are_known(engine, text, rest) -> None:  # type: ignore[no-untyped-def]
    result = await _at_end(engine, text)
    assert result is not None and rest in result


async def test_call_arguments_stay_guided(engine) -> None:  # type: ignore[no-untyped-def]
    # Not a comprehension head: a misspelled argument is still infeasible.
    assert await _at_end(engine, "def f(values):\n    return sorted(valuez") == []
    assert await _at_end(engine, "def f(values):\n    return sorted([1], valuez") == []


@pytest.mark.parametrize(
    "text",
    [
        "x = 'hello wor",  # inside a string
        'x = """first line\nsecond wor',  # inside a triple-quoted string spanning lines
        "x = 1  # a comm",  # inside a comment
        "x = 12",  # a number
        "x = 1.5e",  # a float's exponent
        "def new_functio",  # a name being defined
        "class NewThin",
        "with open('f') as handl",
        "for ite",
        "total = [x for ite",
        "def f(alpha, bet",
        "f = lambda alpha, bet",
        "def f():\n    global counte",
        "def f(strings):\n    return [elem",  # a comprehension's variable, bound later
        "def f(d):\n    return {ke",
        "def f(s):\n    month, da",  # a tuple of new variables
    ],
)
async def test_anything_goes_where_jedi_cannot_judge(engine, text) -> None:  # type: ignore[no-untyped-def]
    assert await _at_end(engine, text) == [""]


async def test_attribute_of_an_object_of_unknown_type_is_not_pruned(engine) -> None:  # type: ignore[no-untyped-def]
    assert await _at_end(engine, "def f(thing):\n    return thing.whateve") == [""]


async def test_statement_start_is_guided_by_known_and_later_names(engine) -> None:  # type: ignore[no-untyped-def]
    # The buggy line was the only definition of `result`; the patch must define it again.
    text = "def f(xs):\n    resu\n    return result"
    assert await engine.continuations(text, 1, 8, DEADLINE_S) == ["lt"]
    # A new variable that matches nothing known is accepted.
    text = "def f(xs):\n    zzq\n    return 1"
    assert await engine.continuations(text, 1, 7, DEADLINE_S) == [""]


async def test_position_outside_the_text_is_unavailable(engine) -> None:  # type: ignore[no-untyped-def]
    assert await engine.continuations("x = 1", 5, 0, DEADLINE_S) is None
    assert await engine.continuations("x = 1", 0, 99, DEADLINE_S) is None


async def test_timeout_returns_none_and_the_engine_stays_usable(engine) -> None:  # type: ignore[no-untyped-def]
    # A large module of distinct functions: Jedi needs far longer than 1 ms to parse it.
    big = "".join(f"def function_{i}(a, b):\n    return a + b * {i}\n\n" for i in range(3000))
    text = big + "import os\nos.pa"
    line, column = _end_of(text)
    started = time.monotonic()
    assert await engine.continuations(text, line, column, 0.001) is None
    assert time.monotonic() - started < 1.0  # the caller was not kept waiting
    assert engine.worker.timeouts >= 1
    assert "th" in (await engine.continuations("import os\nos.pa", 1, 5, DEADLINE_S) or [])


async def test_unresolved_names_in_the_patch_lines(engine) -> None:  # type: ignore[no-untyped-def]
    text = (
        "import os\n"
        "class Stack:\n"
        "    def push(self, item):\n"
        "        pass\n"
        "def use(values, thing):\n"
        "    stack = Stack()\n"
        "    stack.pushh(os.path.joinn(valuez, thing.anything, len(values)), key=1)\n"
        "    return helper(values)\n"
        "def helper(v):\n"
        "    return v\n"
    )
    assert await engine.unresolved_names(text, 6, 6, DEADLINE_S) == ["pushh", "joinn", "valuez"]
    # Names defined later in the file, builtins and parameters resolve.
    assert await engine.unresolved_names(text, 7, 7, DEADLINE_S) == []


async def test_prepare_warms_jedi_up() -> None:
    engine = JediOracle(python=sys.executable, path="/tmp/quill_jedi_prepare.py")
    try:
        assert await engine.prepare(60.0)
        assert await engine.continuations("import os\nos.pa", 1, 5, DEADLINE_S) is not None
    finally:
        engine.close()


async def test_unresolved_names_timeout(engine) -> None:  # type: ignore[no-untyped-def]
    big = "".join(f"def other_{i}(a, b):\n    return a - b * {i}\n\n" for i in range(3000))
    assert await engine.unresolved_names(big + "x = nope\n", 9000, 9000, 0.001) is None


def test_lexical_state() -> None:
    assert lexical_state("x = 'abc") == "string"
    assert lexical_state("x = 'abc' + y") == "code"
    assert lexical_state("x = '''a\n'''\ny") == "code"
    assert lexical_state("x = 'unterminated\ny = 1") == "code"
    assert lexical_state("y = 2  # note") == "comment"
    assert lexical_state('s = "it\'s" + f') == "code"


def test_default_python_is_the_workspace_venv(tmp_path: Path) -> None:
    assert default_python(tmp_path) is None
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert default_python(tmp_path) == str(python)


def test_missing_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        JediOracle(python=str(tmp_path / "no-python"))


CALLS = """\
import os


def area(width, height=1, *, unit):
    return width * height


class Box:
    def fill(self, item, count=1):
        return [item] * count


def use(box: Box):
    return PATCH
"""


@pytest.mark.parametrize(
    ("patch", "problems"),
    [
        ("area(2, 3, unit='m')", []),
        ("area(2, unit='m')", []),
        ("area(2, 3, 4, unit='m')", ["area() takes 2 positional argument(s), 3 given"]),
        ("area(2, 3)", ["area() is missing argument(s) unit"]),
        ("area(2, colour='red', unit='m')", ["area() has no parameter 'colour'"]),
        ("box.fill(1, count=2)", []),
        ("box.fill()", ["fill() is missing argument(s) item"]),
        ("len([1], 2)", ["len() takes 1 positional argument(s), 2 given"]),
        ("max(1, 2, 3) + sorted([3], key=len)[0]", []),  # overloads: one fits
        ("os.path.join('a', 'b', 'c')", []),  # *paths
        ("print(*[1, 2], sep='')", []),  # a starred argument is not judged
        ("unknown_function(1, 2, 3)", []),  # no signature known: no judgement
        ("area(2, unit='m') + len([1], 2", []),  # an unclosed call is not judged yet
    ],
)
def test_call_problems_check_arity_and_keyword_names(
    engine: JediOracle, patch: str, problems: list[str]
) -> None:
    line = "    return " + patch
    text = CALLS.replace("    return PATCH", line)
    start_line = text.split("\n").index(line)
    assert asyncio.run(engine.call_problems(text, start_line, line, DEADLINE_S)) == problems
