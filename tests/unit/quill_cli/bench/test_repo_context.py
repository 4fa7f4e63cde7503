"""The repository-level set: tasks built from a real installed package, and the static pass that
scores them (the hidden line passes; an undefined name or a wrong call does not)."""

from __future__ import annotations

import sysconfig
from dataclasses import replace
from pathlib import Path

import pytest

from quill_cli.bench.cross_file import CrossFileTask, build_tasks
from quill_cli.bench.repo_context import exact_match, names_resolve, static_pass

CLICK = Path(sysconfig.get_paths()["purelib"]) / "click"


@pytest.fixture(scope="module")
def tasks() -> list[CrossFileTask]:
    assert CLICK.is_dir(), "click is installed with the project (a dependency of the CLI)"
    return build_tasks(CLICK, 30, 0, defined_only=True)


def test_tasks_are_deterministic_and_name_the_definition(tasks: list[CrossFileTask]) -> None:
    assert len(tasks) == 30
    assert tasks == build_tasks(CLICK, 30, 0, defined_only=True)
    for task in tasks:
        assert task.definition_path is not None and task.definition_lines is not None
        assert task.definition_path != task.path
        source = (CLICK / task.definition_path).read_text("utf-8").split("\n")
        first, last = task.definition_lines
        header = "\n".join(source[first : last + 1])
        assert f"def {task.symbol}(" in header or f"class {task.symbol}" in header
        original = (CLICK / task.path).read_text("utf-8").split("\n")[task.line]
        assert original.strip() == task.target
        assert (
            task.prefix.endswith("\n" + task.indent)
            and task.indent == original[: len(original) - len(original.lstrip())]
        )


def test_the_hidden_line_passes_and_matches(tasks: list[CrossFileTask]) -> None:
    for task in tasks:
        assert exact_match("  " + task.target + " ", task)
        assert static_pass(task, task.target, "click"), task


def test_wrong_lines_fail(tasks: list[CrossFileTask]) -> None:
    # A call into a module that imports here (click's _winconsole is Windows-only: its calls
    # are not checked against a signature).
    task = next(
        t for t in tasks if f"{t.symbol}(" in t.target and t.definition_path != "_winconsole.py"
    )
    assert not static_pass(task, task.target.replace(task.symbol, task.symbol + "_typo"), "click")
    assert not static_pass(task, task.target + " (", "click")  # does not parse
    # A call with more positional arguments than the real signature takes.
    too_many = task.target.replace(f"{task.symbol}(", f"{task.symbol}(1, 2, 3, 4, 5, 6, 7, 8, ", 1)
    assert not static_pass(task, too_many, "click")
    assert not exact_match("pass", task)
    assert not static_pass(task, "  ", "click")  # no suggestion


def test_names_resolve_sees_scopes() -> None:
    source = (
        "import os\n"
        "def f(a, *rest, key=None):\n"
        "    total = 0\n"
        "    for item in rest:\n"
        "        total += len(item) + a + os.sep.count(key) + [x for x in rest][0]\n"
        "    return missing(total)\n"
    )
    assert names_resolve(source, 5)
    assert not names_resolve(source, 6)
    task = CrossFileTask("m.py", 0, "", "", "x", "x")
    assert static_pass(replace(task, prefix="x = 1\n"), "print(x)", "click")
