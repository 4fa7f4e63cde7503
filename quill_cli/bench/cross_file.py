"""Repository-level completion tasks from a real package: a line that uses a name another module
of the same package defines, hidden, with the file around it as prefix and suffix.

Shared by `quill bench retrieval` (does the index find the other file?) and `quill bench quality
--sets repo_context` (do open documents, recent edits or the index bring it into the prompt?).
Deterministic for a given package, seed and limit.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CrossFileTask:
    path: str  # relative to the package root
    line: int  # zero-based line of the hidden line
    prefix: str  # the file before the hidden line, and the line's indentation
    suffix: str  # a newline and the file after the hidden line
    target: str  # the hidden line, stripped
    symbol: str  # the name from another module the line uses
    # Where that name is defined (relative path; zero-based first and last line of its def or
    # class, decorators included), or None when it is not a top-level definition there.
    definition_path: str | None = None
    definition_lines: tuple[int, int] | None = None

    @property
    def indent(self) -> str:
        return self.prefix.rsplit("\n", 1)[-1]


@dataclass(frozen=True)
class _Import:
    name: str  # the name in the defining module
    module: Path | None  # the defining module's path relative to the package root


def _module_path(sources: dict[str, str], importer: str, level: int, module: str) -> Path | None:
    """The package-relative file of `from <level dots><module> import ...` in `importer`."""
    base = Path(importer).parent
    for _ in range(max(0, level - 1)):
        base = base.parent
    parts = [p for p in module.split(".") if p]
    candidates = [base.joinpath(*parts, "__init__.py")]
    if parts:
        candidates.insert(0, base.joinpath(*parts[:-1], parts[-1] + ".py"))
    for candidate in candidates:
        if candidate.as_posix() in sources:
            return candidate
    return None


def _imports(tree: ast.Module, path: str, package: str, sources: dict[str, str]) -> tuple[
    dict[str, _Import], set[int]
]:  # fmt: skip
    """Names the module imports from its own package, and the lines of those imports."""
    imported: dict[str, _Import] = {}
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level > 0:
            target = _module_path(sources, path, node.level, module)
        elif module.split(".")[0] == package:
            target = _module_path(sources, "_", 1, module.partition(".")[2])
        else:
            continue
        for alias in node.names:
            if alias.name != "*":
                imported[alias.asname or alias.name] = _Import(alias.name, target)
        lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return imported, lines


def _definition(source: str, name: str) -> tuple[int, int] | None:
    """Zero-based first and last line of the top-level def or class `name` in `source`."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name == name
        ):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return first - 1, (node.end_lineno or node.lineno) - 1
    return None


# With `defined_only`: definitions longer than this are not what a user has just written.
MAX_DEFINITION_LINES = 60


def _string_lines(tree: ast.Module) -> set[int]:
    """One-based lines inside multi-line string literals (docstrings), after their first."""
    return {
        line
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        for line in range(node.lineno + 1, (node.end_lineno or node.lineno) + 1)
    }


def build_tasks(
    repo: Path, limit: int, seed: int, per_file: int = 3, defined_only: bool = False
) -> list[CrossFileTask]:
    """Lines that use a name the file imports from another module of the same package.

    With `defined_only`: only calls of that name (not a method of the same name), outside
    strings, where the other module defines it itself in at most MAX_DEFINITION_LINES lines
    (a def or class), so the definition can be shown as context."""
    package = repo.name
    sources = {
        p.relative_to(repo).as_posix(): p.read_text("utf-8")
        for p in sorted(repo.rglob("*.py"))
        if "test" not in p.name
    }
    tasks: list[CrossFileTask] = []
    for path, text in sources.items():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        imported, import_lines = _imports(tree, path, package, sources)
        if not imported:
            continue
        skipped = import_lines | (_string_lines(tree) if defined_only else set())
        # A method of the same name (`obj.name(`) is not the imported name.
        boundary = r"(?<![\w.])" if defined_only else r"\b"
        lines = text.split("\n")
        candidates = []
        for number, line in enumerate(lines):
            stripped = line.strip()
            if number + 1 in skipped or not 12 <= len(stripped) <= 90:
                continue
            if stripped.startswith(("def ", "class ", "@", "#", "import ", "from ", '"', "'")):
                continue
            pattern = boundary + r"{}\s*[(.]"
            used = [
                n for n in sorted(imported) if re.search(pattern.format(re.escape(n)), stripped)
            ]
            if not used:
                continue
            where = imported[used[0]]
            definition_path = where.module.as_posix() if where.module is not None else None
            definition = (
                _definition(sources[definition_path], where.name) if definition_path else None
            )
            if defined_only and (
                definition is None or definition[1] - definition[0] >= MAX_DEFINITION_LINES
            ):
                continue
            candidates.append((number, used[0], definition_path, definition))
        rng = random.Random(f"{seed}:{path}")
        for number, symbol, definition_path, definition in rng.sample(
            candidates, min(per_file, len(candidates))
        ):
            line = lines[number]
            indent = line[: len(line) - len(line.lstrip())]
            tasks.append(
                CrossFileTask(
                    path,
                    number,
                    "\n".join(lines[:number]) + "\n" + indent,
                    "\n" + "\n".join(lines[number + 1 :]),
                    line.strip(),
                    symbol,
                    definition_path if definition is not None else None,
                    definition,
                )
            )
    random.Random(seed).shuffle(tasks)
    return tasks[:limit]
