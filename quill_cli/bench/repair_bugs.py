"""Deterministic single-line bugs planted in HumanEval's canonical solutions.

Each bug takes one line of a task's canonical solution (the single-line infilling set names the
line) and applies one mutation of a kind real bugs have: a wrong operator, an off-by-one, a wrong
variable, a misspelled or a wrong (but existing) attribute/method/function name, a wrong
argument. A mutation only counts when the program still parses and its tests now fail.
"""

from __future__ import annotations

import ast
import builtins
import gzip
import io
import json
import keyword
import random
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KINDS = (
    "wrong_operator", "off_by_one", "wrong_variable", "misspelled_name", "wrong_name",
    "wrong_argument",
)  # fmt: skip
SINGLE_LINE_SET = "HumanEval-SingleLineInfilling.jsonl.gz"

_OPERATOR_SWAPS = {
    "<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-", "-": "+",
    "*": "+", "//": "/", "%": "//", "+=": "-=", "-=": "+=", "and": "or", "or": "and",
    "in": "not in",
}  # fmt: skip
# Real names that a hurried programmer confuses.
_NAME_SWAPS = {
    "append": "extend", "extend": "append", "lower": "upper", "upper": "lower", "min": "max",
    "max": "min", "keys": "values", "values": "keys", "items": "keys", "startswith": "endswith",
    "endswith": "startswith", "isdigit": "isalpha", "isalpha": "isdigit", "index": "find",
    "find": "index", "split": "strip", "strip": "split", "sum": "len", "len": "sum",
    "sorted": "reversed", "reversed": "sorted", "pop": "remove", "remove": "pop",
    "ord": "chr", "chr": "ord", "int": "str", "str": "int", "abs": "round", "isupper": "islower",
    "islower": "isupper", "count": "index", "all": "any", "any": "all", "join": "split",
}  # fmt: skip
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Bug:
    task_id: str
    kind: str
    # The buggy file and the zero-based line of the bug.
    text: str
    line: int
    original_line: str
    buggy_line: str
    test: str
    entry_point: str

    def program(self, file_text: str) -> str:
        """A file (the buggy one, or one with a patch) followed by the task's tests."""
        return f"{file_text}\n{self.test}\ncheck({self.entry_point})\n"

    def with_line(self, line: str) -> str:
        lines = self.text.split("\n")
        lines[self.line] = line
        return "\n".join(lines)


@dataclass(frozen=True)
class _Token:
    kind: int
    text: str
    start: int
    end: int


def _tokens(code: str) -> list[_Token] | None:
    try:
        found = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return [
        _Token(t.type, t.string, t.start[1], t.end[1])
        for t in found
        if t.type in (tokenize.NAME, tokenize.OP, tokenize.NUMBER, tokenize.STRING)
    ]


def _replace(code: str, start: int, end: int, new: str) -> str:
    return code[:start] + new + code[end:]


def _local_variables(program: str, line_number: int) -> list[str]:
    """Parameters and assigned names of the innermost function holding the 1-based line."""
    tree = ast.parse(program)
    holders = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.Lambda)
        and node.lineno <= line_number <= (node.end_lineno or node.lineno)
    ]
    if not holders:
        return []
    function = max(holders, key=lambda node: node.lineno)
    names = {arg.arg for arg in function.args.args + function.args.kwonlyargs}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return sorted(names)


def _mutate(kind: str, code: str, variables: list[str], rng: random.Random) -> str | None:
    """`code` (one line, no indentation) with a mutation of `kind`, or None if none applies."""
    tokens = _tokens(code)
    if not tokens:
        return None
    sites: list[str] = []  # every possible mutated line; one is chosen
    for index, token in enumerate(tokens):
        before = tokens[index - 1].text if index else ""
        after = tokens[index + 1].text if index + 1 < len(tokens) else ""
        is_name = token.kind == tokenize.NAME and not keyword.iskeyword(token.text)
        # A use, not a definition (`def name(`): the bug is in how a name is used.
        attribute_or_call = (
            is_name and before not in ("def", "class") and (before == "." or after == "(")
        )
        variable = is_name and not attribute_or_call and token.text in variables

        def put(new: str, token: _Token = token) -> None:
            sites.append(_replace(code, token.start, token.end, new))

        if kind == "wrong_operator" and token.text in _OPERATOR_SWAPS and before != "=":
            put(_OPERATOR_SWAPS[token.text])
        elif kind == "off_by_one" and token.kind == tokenize.NUMBER and token.text.isdigit():
            put(str(int(token.text) + 1))
            if int(token.text) > 0:
                put(str(int(token.text) - 1))
        elif kind == "off_by_one" and variable and before == "[" and after == "]":
            put(f"{token.text} + 1")
        elif kind == "wrong_variable" and variable:
            others = [v for v in variables if v != token.text]
            if others:
                put(rng.choice(others))
        elif kind == "misspelled_name" and attribute_or_call and len(token.text) >= 3:
            put(_misspell(token.text, rng))
        elif kind == "wrong_name" and attribute_or_call and token.text in _NAME_SWAPS:
            put(_NAME_SWAPS[token.text])
    if kind == "wrong_argument":
        sites.extend(_argument_sites(code, variables, rng))
    sites = [site for site in sites if site != code]
    return rng.choice(sites) if sites else None


def _misspell(name: str, rng: random.Random) -> str:
    position = rng.randrange(1, len(name) - 1)
    if rng.random() < 0.5 and name[position] != name[position + 1]:
        return name[:position] + name[position + 1] + name[position] + name[position + 2 :]
    return name[:position] + name[position + 1 :]


def _argument_sites(code: str, variables: list[str], rng: random.Random) -> list[str]:
    """Swap a call's first two arguments, or pass another variable as its only argument."""
    if not code.isascii():
        return []  # ast offsets are in bytes
    try:
        tree = ast.parse(code if not code.rstrip().endswith(":") else code + " pass")
    except SyntaxError:
        return []
    sites: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first, *rest = node.args
        if rest and not isinstance(first, ast.Starred) and not isinstance(rest[0], ast.Starred):
            second = rest[0]
            a, b = ast.get_source_segment(code, first), ast.get_source_segment(code, second)
            if a and b and a != b and first.end_col_offset and second.end_col_offset:
                sites.append(
                    code[: first.col_offset] + b + code[first.end_col_offset : second.col_offset]
                    + a + code[second.end_col_offset :]
                )  # fmt: skip
        elif isinstance(first, ast.Name) and first.end_col_offset:
            others = [v for v in variables if v != first.id]
            if others:
                other = rng.choice(others)
                sites.append(code[: first.col_offset] + other + code[first.end_col_offset :])
    return sites


def make_bugs(
    data_dir: Path, limit: int, seed: int, fails_tests: Callable[[Bug], bool]
) -> list[Bug]:
    """Up to `limit` bugs, one per HumanEval problem, kinds in rotation, fixed by `seed`."""
    with gzip.open(data_dir / SINGLE_LINE_SET, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rng = random.Random(seed)
    rng.shuffle(rows)
    bugs: list[Bug] = []
    used_problems: set[str] = set()
    for row in rows:
        if len(bugs) >= limit:
            break
        problem = row["task_id"].split("/", 1)[1].rsplit("/", 1)[0]
        canonical = row["canonical_solution"].rstrip("\n")
        if problem in used_problems or "\n" in canonical or not row["prompt"].endswith("\n"):
            continue
        text = row["prompt"] + row["canonical_solution"] + row["suffix"]
        line = row["prompt"].count("\n")
        indentation = canonical[: len(canonical) - len(canonical.lstrip())]
        kind = KINDS[len(bugs) % len(KINDS)]
        try:
            variables = _local_variables(text, line + 1)
        except SyntaxError:
            continue
        mutated = _mutate(kind, canonical.strip(), variables, rng)
        if mutated is None:
            continue
        buggy_line = indentation + mutated
        lines = text.split("\n")
        lines[line] = buggy_line
        bug = Bug(row["task_id"], kind, "\n".join(lines), line, canonical, buggy_line,
                  row["test"], row["entry_point"])  # fmt: skip
        try:
            ast.parse(bug.text)
        except SyntaxError:
            continue
        if fails_tests(bug):
            bugs.append(bug)
            used_problems.add(problem)
    return bugs
