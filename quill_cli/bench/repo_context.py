"""`quill bench quality --sets repo_context`: does the context users ask for help completions?

A repository-level set built from a real installed package (default: click): a line that calls
a name defined in another module of the package is hidden (quill_cli/bench/cross_file.py). The
editor is a real `quill lsp` (quill_cli/lsp_client.py) against the serving process, so the
language server chooses the snippets exactly as for a user. Each task runs under each condition,
one language-server process per condition:

- none: no context source;
- open_documents: the defining file is open (whole), beside two other files of the package;
- recent_edits: the defining file is open without the definition, then the definition is
  typed in (a recent edit), beside the same two other files;
- retrieval: the package is synced and indexed; no other file is open;
- all: every source on, the definition typed in as for recent_edits.

Scored: exact match of the line; a static pass (the completed file parses, every name in the
line resolves in its scope, and every call of the other module's name binds to the real
signature, checked with `inspect.signature` on the installed package: the line would run
without NameError or a wrong call, which is what context can fix; executing it would need the
package's tests); whether the line uses the name; and the language server's answer time.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import importlib
import inspect
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quill_cli.bench.cross_file import CrossFileTask, build_tasks
from quill_cli.bench.report import summarize_ms

# Condition -> (contextOpenDocuments, contextRecentEdits, retrieval, how the definition's file
# is open: "whole", "typed" (without the definition, then typed in) or None).
CONDITIONS: dict[str, tuple[bool, bool, bool, str | None]] = {
    "none": (False, False, False, None),
    "open_documents": (True, False, False, "whole"),
    "recent_edits": (False, True, False, "typed"),
    "retrieval": (False, False, True, None),
    "all": (True, True, True, "typed"),
}
OTHER_OPEN_FILES = 2


# ---- scoring -----------------------------------------------------------------------------


def completed_source(task: CrossFileTask, line: str) -> str:
    return task.prefix + line.strip() + task.suffix


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _bound_names(scope: ast.AST) -> set[str]:
    """Names a module, function, lambda or class binds: parameters, assignment and loop
    targets, imports, definitions, `except ... as`, comprehension variables, global and
    nonlocal declarations (nested scopes' own bindings left out)."""
    names: set[str] = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        arguments = scope.args
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                         arguments.vararg, arguments.kwarg]:  # fmt: skip
            if argument is not None:
                names.add(argument.arg)
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            pending.extend(node.decorator_list)
            continue  # its body is its own scope
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        pending.extend(ast.iter_child_nodes(node))
    return names


def _scopes_around(tree: ast.Module, line: int) -> list[ast.AST]:
    """The module and the functions, lambdas and classes whose source spans `line`."""
    scopes: list[ast.AST] = [tree]
    for node in ast.walk(tree):
        if isinstance(node, _SCOPES) and node.lineno <= line <= (node.end_lineno or node.lineno):
            scopes.append(node)
    return scopes


def names_resolve(source: str, line: int) -> bool:
    """Every name loaded on `line` (one-based) is bound: a builtin, or bound by the module or a
    scope around the line."""
    tree = ast.parse(source)
    bound: set[str] = set()
    for scope in _scopes_around(tree, line):
        bound |= _bound_names(scope)
    return all(
        hasattr(builtins, node.id) or node.id in bound
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.lineno == line
    )


def calls_bind(source: str, line: int, task: CrossFileTask, package: str) -> bool:
    """Every call of `task.symbol` on `line` binds to the installed object's signature."""
    if task.definition_path is None:
        return True
    module_name = ".".join(
        [package, *Path(task.definition_path).with_suffix("").parts]
    ).removesuffix(".__init__")
    try:
        target = getattr(importlib.import_module(module_name), task.symbol)
        signature = inspect.signature(target)
    except Exception:  # noqa: BLE001 - a module that cannot load here (_winconsole on Linux)
        return True  # nothing to check against
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and node.lineno == line
            and isinstance(node.func, ast.Name)
            and node.func.id == task.symbol
        ):
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            continue  # *args / **kwargs: any arity may bind
        try:
            signature.bind(*node.args, **{k.arg: k.value for k in node.keywords if k.arg})
        except TypeError:
            return False
    return True


def static_pass(task: CrossFileTask, predicted: str, package: str) -> bool:
    """A suggestion was made, the completed file parses, the line's names resolve, its calls of
    the other module's name bind to the real signature."""
    if not predicted.strip():
        return False  # no suggestion passes nothing
    source = completed_source(task, predicted)
    line = task.line + 1
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return names_resolve(source, line) and calls_bind(source, line, task, package)


def exact_match(predicted: str, task: CrossFileTask) -> bool:
    return predicted.strip() == task.target


# ---- running -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    exact: bool
    passed: bool
    uses_symbol: bool
    latency_s: float
    answered: bool
    context: str  # quill/attribution.py's label of what serving put in the prompt
    predicted: str


def _other_files(task: CrossFileTask, paths: list[str], seed: int) -> list[str]:
    choices = sorted(p for p in paths if p not in (task.path, task.definition_path))
    return random.Random(f"{seed}:{task.path}:{task.line}").sample(
        choices, min(OTHER_OPEN_FILES, len(choices))
    )


async def _one_task(
    client: Any, root: Path, task: CrossFileTask, how: str | None, others: list[str]
) -> tuple[str, float, str]:
    """Open what the condition opens, ask at the hidden line; the suggestion, its time and the
    context label serving reported for its prompt (so a condition is seen to reach the prompt)."""
    opened: list[str] = []
    for other in others:
        opened.append(client.open(root / other, (root / other).read_text("utf-8")))
    if how is not None and task.definition_path is not None and task.definition_lines:
        path = root / task.definition_path
        text = path.read_text("utf-8")
        if how == "typed":
            lines = text.split("\n")
            first, last = task.definition_lines
            opened.append(client.open(path, "\n".join(lines[:first] + lines[last + 1 :])))
            client.open(path, text)  # the definition typed in: a change, a recent edit
        else:
            opened.append(client.open(path, text))
    uri = client.open(root / task.path, task.prefix + task.suffix)
    opened.append(uri)
    started = time.perf_counter()
    items = await client.inline_completion(uri, task.line, len(task.indent))
    latency = time.perf_counter() - started
    stats = await client.execute_command("quill.stats")
    calls = stats.get("completions") or [{}]
    for done in opened:
        client.close(done)
    return (items[0].insert_text if items else ""), latency, calls[-1].get("context") or "failed"


async def run_condition(
    name: str,
    tasks: list[CrossFileTask],
    root: Path,
    address: str,
    package: str,
    seed: int,
) -> dict[str, Any]:
    from quill_cli.lsp_client import StdioLanguageClient

    open_documents, recent_edits, retrieval, how = CONDITIONS[name]
    client = StdioLanguageClient(
        root,
        {
            "servingAddress": address,
            "completionMode": "single",
            "requestTimeoutS": 120,
            "contextOpenDocuments": open_documents,
            "contextRecentEdits": recent_edits,
            "retrieval": retrieval,
            "retentionChecksS": [],
        },
    )
    await client.start()
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))
    outcomes: list[_Outcome] = []
    try:
        await _one_task(client, root, tasks[0], how, [])  # warm-up, not counted
        for task in tasks:
            others = _other_files(task, paths, seed)
            predicted, latency, context = await _one_task(client, root, task, how, others)
            outcomes.append(
                _Outcome(
                    exact_match(predicted, task),
                    static_pass(task, predicted, package),
                    task.symbol in predicted,
                    latency,
                    bool(predicted.strip()),
                    context,
                    predicted.strip(),
                )
            )
    finally:
        await client.stop()
    count = max(1, len(outcomes))
    figures = {
        "n": len(outcomes),
        "exact_match": round(sum(o.exact for o in outcomes) / count, 3),
        "static_pass_rate": round(sum(o.passed for o in outcomes) / count, 3),
        "uses_symbol": round(sum(o.uses_symbol for o in outcomes) / count, 3),
        "answered": round(sum(o.answered for o in outcomes) / count, 3),
        "latency": summarize_ms([o.latency_s for o in outcomes]),
        "prompt_context": dict(Counter(o.context for o in outcomes).most_common()),
        # The suggestion per task, in the tasks' order (read beside the targets: what changed).
        "predicted": [o.predicted for o in outcomes],
    }
    print(f"repo_context {name}: {figures}", file=sys.stderr)
    return figures


async def _index(root: Path, address: str) -> dict[str, Any]:
    """Sync the package to serving as the language server would, and wait for its index."""

    from lsp_server.workspace_identity import workspace_id
    from quill.channel import open_channel
    from quill.v1 import quill_pb2 as pb
    from quill.v1 import quill_pb2_grpc
    from quill.workspace_files import walk_workspace

    files = list(walk_workspace(root))
    workspace = workspace_id(root.as_uri())
    started = time.perf_counter()
    async with open_channel(address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        await stub.SyncWorkspace(
            pb.SyncWorkspaceRequest(
                workspace_id=workspace,
                files=[pb.WorkspaceFile(path=f.path, content=f.text) for f in files],
            )
        )
        while True:
            status = (
                await stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id=workspace))
            ).status
            if status.files_pending == 0 and status.files_indexed >= len(files):
                break
            await asyncio.sleep(0.5)
    return {
        "files": len(files),
        "chunks": status.chunks,
        "index_s": round(time.perf_counter() - started, 1),
    }


async def score(
    repo: Path, limit: int, seed: int, address: str, conditions: list[str]
) -> dict[str, Any]:
    """Every condition on the same tasks, in a copy of `repo` (the editor's workspace)."""
    tasks = build_tasks(repo, limit, seed, defined_only=True)
    results: dict[str, Any] = {
        "repo": str(repo),
        "tasks": len(tasks),
        "targets": [f"{task.path}:{task.line + 1}: {task.target}" for task in tasks],
    }
    with tempfile.TemporaryDirectory(prefix="quill-repo-context-") as directory:
        root = Path(directory) / repo.name
        shutil.copytree(repo, root, ignore=shutil.ignore_patterns("__pycache__"))
        if any(CONDITIONS[c][2] for c in conditions):
            results["index"] = await _index(root, address)
        for name in conditions:
            results[name] = await run_condition(name, tasks, root, address, repo.name, seed)
    base = results.get("none", {}).get("latency", {}).get("mean_ms")
    if base:
        for name in conditions:
            results[name]["latency_ratio_to_none"] = round(
                results[name]["latency"]["mean_ms"] / base, 2
            )
    return results
