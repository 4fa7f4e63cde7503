"""The public API of Python source, read statically with `ast` (never imported, never executed).

Used on both sides: the language server reads third-party packages in the user's environment,
serving reads the standard library and the workspace's synced files. Only the standard library
is imported here, so the language server stays light.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Signatures and summaries are for people and prompts: long ones are cut.
MAX_SIGNATURE_CHARS = 200
MAX_SUMMARY_CHARS = 160


@dataclass(frozen=True)
class ApiDefinition:
    """One public name: `kind` is module, class, function, method or constant."""

    qualified_name: str
    kind: str
    signature: str
    summary: str
    line: int


def module_name_for_path(path: str) -> str | None:
    """`pkg/sub/mod.py` -> `pkg.sub.mod`, `pkg/__init__.py` -> `pkg`; None for non-modules."""
    parts = Path(path).with_suffix("").parts
    if not path.endswith((".py", ".pyi")) or not parts:
        return None
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def is_public(name: str) -> bool:
    return not name.startswith("_")


def summary_of(docstring: str | None) -> str:
    if not docstring:
        return ""
    for line in docstring.strip().splitlines():
        line = line.strip()
        if line:
            return _cut(line, MAX_SUMMARY_CHARS)
    return ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _arguments(args: ast.arguments, drop_self: bool) -> str:
    parts: list[str] = []
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        if index == 0 and drop_self and arg.arg in ("self", "cls"):
            continue
        parts.append(_param(arg, default))
        if args.posonlyargs and index == len(args.posonlyargs) - 1:
            parts.append("/")
    if args.vararg is not None:
        parts.append("*" + _param(args.vararg, None))
    elif args.kwonlyargs:
        parts.append("*")
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        parts.append(_param(arg, kw_default))
    if args.kwarg is not None:
        parts.append("**" + _param(args.kwarg, None))
    return ", ".join(parts)


def _param(arg: ast.arg, default: ast.expr | None) -> str:
    text = arg.arg
    if arg.annotation is not None:
        text += ": " + ast.unparse(arg.annotation)
    if default is not None:
        text += (" = " if arg.annotation is not None else "=") + ast.unparse(default)
    return text


def function_signature(
    node: ast.FunctionDef | ast.AsyncFunctionDef, name: str, method: bool
) -> str:
    text = f"{name}({_arguments(node.args, drop_self=method)})"
    if node.returns is not None:
        text += " -> " + ast.unparse(node.returns)
    return _cut(text, MAX_SIGNATURE_CHARS)


def _class_signature(node: ast.ClassDef) -> str:
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "__init__":
            return _cut(
                f"{node.name}({_arguments(item.args, drop_self=True)})", MAX_SIGNATURE_CHARS
            )
    return f"{node.name}()"


def _declared_all(tree: ast.Module) -> set[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            if isinstance(value, (list, tuple)):
                return {str(v) for v in value}
    return None


def definitions(module: str, source: str) -> Iterator[ApiDefinition]:
    """The module itself, its public functions, classes (and their methods) and constants.

    Raises SyntaxError for source that does not parse.
    """
    tree = ast.parse(source)
    exported = _declared_all(tree)

    def public(name: str) -> bool:
        return name in exported if exported is not None else is_public(name)

    yield ApiDefinition(module, "module", module, summary_of(ast.get_docstring(tree)), 1)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(node.name):
            yield ApiDefinition(
                f"{module}.{node.name}",
                "function",
                function_signature(node, node.name, method=False),
                summary_of(ast.get_docstring(node)),
                node.lineno,
            )
        elif isinstance(node, ast.ClassDef) and public(node.name):
            yield ApiDefinition(
                f"{module}.{node.name}",
                "class",
                _class_signature(node),
                summary_of(ast.get_docstring(node)),
                node.lineno,
            )
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_public(
                    item.name
                ):
                    yield ApiDefinition(
                        f"{module}.{node.name}.{item.name}",
                        "method",
                        function_signature(item, item.name, method=True),
                        summary_of(ast.get_docstring(item)),
                        item.lineno,
                    )
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper() and public(target.id):
                    yield ApiDefinition(
                        f"{module}.{target.id}", "constant", target.id, "", node.lineno
                    )


def imported_modules(source: str) -> set[str]:
    """Top-level names of the absolute imports in `source`.

    A file being typed rarely parses as a whole; then its import lines are read one by one.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        found = {target.split(".")[0] for target in import_aliases(source).values()}
        # `from package import (` opens a list that spans lines: only its module is needed.
        found.update(match.group(1).split(".")[0] for match in _FROM_OPEN.finditer(source))
        return found
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


_FROM_OPEN = re.compile(r"^\s*from\s+([A-Za-z_][\w.]*)\s+import\s*\(", re.MULTILINE)


def import_aliases(source: str) -> dict[str, str]:
    """Local name -> qualified module or object, e.g. {"np": "numpy", "loads": "json.loads"}.

    Tolerates source that does not parse (the document being typed) by reading line by line.
    """
    aliases: dict[str, str] = {}
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped.startswith(("import ", "from ")):
            continue
        try:
            tree = ast.parse(stripped)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    if alias.name != "*":
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


@dataclass(frozen=True)
class ReExport:
    """`from .x import y as z` in a module: `name` here is `source_module.source_name`.

    `source_name` "*" re-exports every public name of `source_module`.
    """

    name: str
    source_module: str
    source_name: str


def re_exports(module: str, source: str, is_package: bool) -> list[ReExport]:
    """Names a module re-exports from modules of its own package (relative or absolute)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    package = module if is_package else module.rpartition(".")[0]
    top = module.split(".")[0]
    found: list[ReExport] = []
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            if not base:
                continue
            target = ".".join([*base, *([node.module] if node.module else [])])
        elif node.module and node.module.split(".")[0] == top:
            target = node.module
        else:
            continue
        for alias in node.names:
            local = alias.asname or alias.name
            if alias.name == "*" or is_public(local):
                found.append(ReExport(local, target, alias.name))
    return found


# Folders inside packages that hold no API users call.
_SKIPPED_DIRS = frozenset({"tests", "test", "testing", "examples", "docs", "benchmarks"})


def package_modules(name: str, origin: Path, locations: list[Path]) -> list[tuple[str, Path]]:
    """(module name, file) of a package's public modules, shallow ones first."""
    if not locations:
        return [(name, origin)]
    found: list[tuple[str, Path]] = []
    for location in locations:
        for path in location.rglob("*.py"):
            relative = path.relative_to(location)
            folders = relative.parts[:-1]
            if any(not is_public(part) or part in _SKIPPED_DIRS for part in folders):
                continue
            if relative.name != "__init__.py" and not is_public(relative.stem):
                continue
            module = module_name_for_path(str(relative))
            found.append((f"{name}.{module}" if module else name, path))
    found.sort(key=lambda item: (item[0].count("."), item[0]))
    return found


def package_definitions(
    modules: Iterable[tuple[str, Path]], max_entries: int, max_file_bytes: int = 1_000_000
) -> list[ApiDefinition]:
    """Definitions of the given modules plus the names their packages re-export.

    A re-export (`from .main import *` in `puremagic/__init__.py`) adds entries under the
    name users write (`puremagic.from_file`). Files that do not parse are skipped.
    """
    by_module: dict[str, list[ApiDefinition]] = {}
    exports: list[tuple[str, ReExport]] = []
    for module, path in modules:
        try:
            if path.stat().st_size > max_file_bytes:
                continue
            source = path.read_text(encoding="utf-8", errors="replace")
            by_module[module] = list(definitions(module, source))
        except (OSError, SyntaxError, ValueError, RecursionError) as error:
            logger.debug("skipping %s: %s", path, error)
            continue
        exports += [(module, e) for e in re_exports(module, source, path.name == "__init__.py")]
    every = {d.qualified_name: d for defs in by_module.values() for d in defs}
    for module, export in exports:
        source_defs = by_module.get(export.source_module, [])
        if export.source_name == "*":
            copied = [d for d in source_defs if d.kind != "module"]
            prefix = export.source_module
            target = module
        else:
            prefix = f"{export.source_module}.{export.source_name}"
            copied = [d for d in source_defs if d.qualified_name.startswith(prefix)]
            copied = [d for d in copied if d.qualified_name[len(prefix) :][:1] in ("", ".")]
            target = f"{module}.{export.name}"
        for definition in copied:
            alias = target + definition.qualified_name[len(prefix) :]
            every.setdefault(
                alias,
                ApiDefinition(
                    alias,
                    definition.kind,
                    definition.signature,
                    definition.summary,
                    definition.line,
                ),
            )
    ordered = sorted(every.values(), key=lambda d: (d.qualified_name.count("."), d.qualified_name))
    return ordered[:max_entries]
