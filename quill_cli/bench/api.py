"""`quill bench api`: API search on and off, on libraries the model cannot know.

Tasks (intent in a docstring, a function signature, tests) call a real installed but
little-known package (puremagic, docstring_parser). One `quill serve` subprocess, one synced
workspace holding the tasks and the packages' catalogs (extracted by the language server's
code). Each task is completed twice through gRPC `Complete`, same model, greedy, same token
budget: with API search (the serving default) and with `disable_api_search`. Figures: pass rate
(the tests run in a subprocess), the rate of references to package attributes that do not exist
(checked statically against the catalog), and search latency p50 (SearchApi RPC and the
searches that ran inside completions).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import hashlib
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quill_cli.bench.report import machine_info, write_json

PNG = "b'\\x89PNG\\r\\n\\x1a\\n' + bytes(40)"


@dataclass(frozen=True)
class ApiTask:
    name: str
    imports: str
    signature: str
    intent: str
    tests: str


TASKS = [
    ApiTask("ext_of_bytes", "import puremagic", "def extension_of(data: bytes) -> str:",
            "Return the file extension puremagic guesses from the bytes' magic number.",
            f"assert extension_of({PNG}) == '.png'"),
    ApiTask("mime_of_bytes", "import puremagic", "def mime_type_of(data: bytes) -> str:",
            "Return the MIME type puremagic guesses from the bytes.",
            f"assert mime_type_of({PNG}) == 'image/png'"),
    ApiTask("ext_of_file", "import puremagic", "def file_extension(path: str) -> str:",
            "Return the extension puremagic guesses for the file at path.",
            f"import tempfile, os\nf = tempfile.NamedTemporaryFile(delete=False)\n"
            f"f.write({PNG}); f.close()\nassert file_extension(f.name) == '.png'"),
    ApiTask("mime_of_file", "import puremagic", "def file_mime(path: str) -> str:",
            "Return the MIME type puremagic guesses for the file at path.",
            f"import tempfile\nf = tempfile.NamedTemporaryFile(delete=False)\n"
            f"f.write({PNG}); f.close()\nassert file_mime(f.name) == 'image/png'"),
    ApiTask("ext_of_stream", "import io\nimport puremagic", "def stream_extension(stream) -> str:",
            "Return the extension puremagic guesses from an open binary stream.",
            f"assert stream_extension(io.BytesIO({PNG})) == '.png'"),
    ApiTask("all_matches", "import puremagic", "def possible_types(data: bytes) -> list:",
            "Return every match puremagic finds for the bytes, with confidence.",
            f"assert possible_types({PNG})[0].extension == '.png'"),
    ApiTask("short_description", "import docstring_parser",
            "def summary_of(doc: str) -> str:",
            "Parse the docstring with docstring_parser and return its short description.",
            "assert summary_of('Add numbers.\\n\\nArgs:\\n    a: first') == 'Add numbers.'"),
    ApiTask("param_names", "import docstring_parser", "def parameter_names(doc: str) -> list:",
            "Parse the docstring with docstring_parser and return the names of its parameters.",
            "assert parameter_names('Add.\\n\\nArgs:\\n    a: x\\n    b: y') == ['a', 'b']"),
]  # fmt: skip


def task_prefix(task: ApiTask) -> str:
    """The task's file up to the API-selection point: `return <package>.`, where the model
    must name an attribute of a package it has not seen."""
    package = task.imports.split()[-1]
    return f'{task.imports}\n\n\n{task.signature}\n    """{task.intent}"""\n    return {package}.'


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("api", help="API search on/off on little-known packages")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--auto-mode", default="constrain", help="quill serve --api-auto-mode")
    p.add_argument("--address", default=None, help="use a running serving (default: start one)")
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def module_references(code: str, aliases: dict[str, str]) -> list[str]:
    """Qualified names of `alias.attr` references to imported modules in `code`."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = None
    names: list[str] = []
    if tree is None:
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = aliases.get(node.value.id)
            if target is not None:
                names.append(f"{target}.{node.attr}")
    return names


def passes(program: str, timeout_s: float = 20.0) -> bool:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(program)
    try:
        result = subprocess.run(
            [sys.executable, handle.name], capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return result.returncode == 0


def _complete_body(prefix: str, text: str) -> str:
    # The completion continues `return package.`; keep the function's own lines only.
    lines = text.split("\n")
    body = [lines[0]] + [line for line in lines[1:] if line.startswith("    ") or not line]
    return prefix + "\n".join(body).rstrip() + "\n"


async def _run(args: argparse.Namespace) -> int:
    from lsp_server.api_extraction import package_catalog
    from quill import envs
    from quill.channel import open_channel
    from quill.v1 import quill_pb2 as pb
    from quill.v1 import quill_pb2_grpc
    from quill_cli.launcher import ServingProcess

    envs.force_offline()
    serving = None
    address = args.address
    if address is None:
        log = envs.cache_dir() / "bench-api-serve.log"
        serving = ServingProcess(["--api-auto-mode", args.auto_mode], log_path=log).start()
        address = serving.address
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            files = {f"tasks/{t.name}.py": task_prefix(t) for t in TASKS}
            for path, text in files.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text)
            packages = await package_catalog(root, None)
            if {p.name for p in packages} != {"puremagic", "docstring_parser"}:
                raise SystemExit(
                    "quill bench api needs puremagic and docstring_parser installed "
                    f"(found: {sorted(p.name for p in packages)}); pip install -e '.[dev]'"
                )
            names = {e.qualified_name for p in packages for e in p.entries}
            workspace_id = "bench-api-" + hashlib.sha256(folder.encode()).hexdigest()[:8]
            async with open_channel(address) as channel:
                stub = quill_pb2_grpc.QuillStub(channel)
                await stub.SyncWorkspace(
                    pb.SyncWorkspaceRequest(
                        workspace_id=workspace_id,
                        manifest=[
                            pb.FileDigest(path=p, sha256=hashlib.sha256(t.encode()).hexdigest())
                            for p, t in files.items()
                        ],
                        manifest_complete=True,
                        files=[
                            pb.WorkspaceFile(
                                path=p, sha256=hashlib.sha256(t.encode()).hexdigest(), content=t
                            )
                            for p, t in files.items()
                        ],
                        package_manifest=[
                            pb.FileDigest(path=p.name, sha256=p.digest) for p in packages
                        ],
                        packages=packages,
                    ),
                    timeout=120,
                )
                search_ms: list[float] = []
                for task in TASKS:  # also builds the catalog before the first completion
                    response = await stub.SearchApi(
                        pb.SearchApiRequest(workspace_id=workspace_id, query=task.intent),
                        timeout=600,
                    )
                    search_ms.append(response.latency_ms)
                search_ms = search_ms[1:]  # the first one waited for the catalog build
                # The packages' part of the catalog is embedded in the background: wait for it.
                for _ in range(600):
                    probe = await stub.SearchApi(
                        pb.SearchApiRequest(workspace_id=workspace_id, query="from_file"),
                        timeout=60,
                    )
                    if any(h.entry.source.startswith("package:") for h in probe.hits):
                        break
                    await asyncio.sleep(1)
                results: dict[str, Any] = {}
                for label, disable in (("with_tool", False), ("without_tool", True)):
                    results[label] = await _run_side(
                        stub, workspace_id, disable, names, args.max_tokens, pb
                    )
                tool_ms = [ms for r in results["with_tool"]["tasks"] for ms in r["tool_latency_ms"]]
    finally:
        if serving is not None:
            serving.stop()
    figures = {
        "machine": machine_info(),
        "auto_mode": args.auto_mode,
        "max_tokens": args.max_tokens,
        "tasks": len(TASKS),
        "search_latency_p50_ms": statistics.median(search_ms) if search_ms else None,
        "tool_search_latency_p50_ms": statistics.median(tool_ms) if tool_ms else None,
        **results,
    }
    for label in ("with_tool", "without_tool"):
        side = results[label]
        print(
            f"{label}: pass {side['pass_rate']:.2f}, non-existent API "
            f"{side['nonexistent_api_rate']:.2f} ({side['nonexistent']}/{side['references']})"
        )
    print(f"search p50 {figures['search_latency_p50_ms']:.1f} ms (SearchApi), "
          f"{figures['tool_search_latency_p50_ms'] or 0:.1f} ms (in completions)")  # fmt: skip
    if args.json:
        write_json(args.json, figures)
    return 0


async def _run_side(
    stub: Any, workspace_id: str, disable: bool, names: set[str], max_tokens: int, pb: Any
) -> dict[str, Any]:
    from quill import python_api

    rows: list[dict[str, Any]] = []
    for task in TASKS:
        prefix = task_prefix(task)
        request = pb.CompleteRequest(
            workspace_id=workspace_id,
            file_path=f"tasks/{task.name}.py",
            language="python",
            prefix=prefix,
            suffix="",
            cursor=pb.Position(line=prefix.count("\n"), character=len(prefix.split("\n")[-1])),
            mode=pb.COMPLETION_MODE_MULTI_LINE,
            limits=pb.CompletionLimits(max_tokens=max_tokens, temperature=0.0),
            context=pb.ContextOptions(disable_api_search=disable, disable_retrieval=True),
        )
        done = None
        async for response in stub.Complete(request, timeout=300):
            if response.HasField("done"):
                done = response.done
        text = done.text if done is not None else ""
        program = _complete_body(prefix, text)
        references = module_references(program, python_api.import_aliases(prefix))
        missing = [r for r in references if r not in names]
        rows.append(
            {
                "task": task.name,
                "completion": text,
                "passed": passes(program + "\n" + task.tests + "\n"),
                "references": references,
                "nonexistent": missing,
                "tool_calls": [
                    {"query": c.query, "results": list(c.results), "outcome": c.outcome}
                    for c in (done.tool_calls if done is not None else [])
                ],
                "tool_latency_ms": [
                    c.latency_ms for c in (done.tool_calls if done is not None else [])
                ],
            }
        )
    total_refs = sum(len(r["references"]) for r in rows)
    total_missing = sum(len(r["nonexistent"]) for r in rows)
    return {
        "pass_rate": sum(r["passed"] for r in rows) / len(rows),
        "nonexistent_api_rate": total_missing / total_refs if total_refs else 0.0,
        "references": total_refs,
        "nonexistent": total_missing,
        "tasks": rows,
    }
