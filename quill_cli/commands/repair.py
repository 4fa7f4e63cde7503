"""`quill repair FILE:LINE`: a guided repair through a real `quill lsp`, printed as unified diffs.

The command starts the language server as a subprocess and runs its `quill.repair` command, so
the completion engine (Jedi, in the workspace's Python environment) answers serving's queries
exactly as it does for an editor.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pygls.exceptions import JsonRpcException

from quill_cli.serving_args import add_serving_arguments, serving_options

logger = logging.getLogger(__name__)


def _parse_location(text: str) -> tuple[Path, int]:
    path, _, line = text.rpartition(":")
    if not path or not line.isdigit():
        raise argparse.ArgumentTypeError(f"expected FILE:LINE (1-based), got {text!r}")
    if int(line) < 1:
        raise argparse.ArgumentTypeError("LINE is 1-based")
    return Path(path), int(line)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "repair", help="candidate patches for a line (guided by Jedi) as unified diffs"
    )
    p.add_argument("location", type=_parse_location, metavar="FILE:LINE", help="1-based line")
    p.add_argument(
        "--end-line", type=int, default=None, help="last line of the region (1-based, inclusive)"
    )
    p.add_argument(
        "--insert",
        action="store_true",
        help="a line is missing: insert new code after LINE instead of replacing it",
    )
    p.add_argument(
        "--test",
        default="",
        metavar="CMD",
        help="shell command that runs the tests (in a temporary copy of the workspace for the "
        "original and each candidate): its failure is shown to the model, passing candidates "
        "rank first",
    )
    p.add_argument("--test-timeout", type=float, default=60.0, help="seconds one test run may take")
    p.add_argument("--budget", type=int, default=0, help="patches to sample (0: serving default)")
    p.add_argument("--json", type=Path, default=None, help="also write the candidates here")
    p.add_argument(
        "--unguided", action="store_true", help="decode without the completion engine (baseline)"
    )
    p.add_argument("--hint", default="", help="failing test output or error message for the model")
    add_serving_arguments(p)
    p.add_argument(
        "--root", type=Path, default=None, help="workspace root (default: current folder)"
    )
    p.add_argument(
        "--python", default=None, help="interpreter whose environment Jedi uses (default: .venv)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds the repair may take")
    p.add_argument(
        "--engine-deadline",
        type=float,
        default=2.0,
        help="seconds Jedi may take per query before serving goes on unguided (default 2)",
    )
    p.set_defaults(func=run)


def candidate_diff(text: str, start_line: int, end_line: int, patch: str, name: str) -> str:
    """The diff of the file with lines start..end replaced by `patch` (start = end + 1: the
    patch is inserted before line start)."""
    from lsp_server.repair.client import place_patch

    patched, _, _ = place_patch(text.split("\n"), start_line, end_line, patch)
    return "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            patched.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )


def _flags(candidate: dict[str, Any]) -> str:
    if not candidate["parses"]:
        return "does not parse"
    flags = ["parses", "names resolve" if candidate["namesResolve"] else "unresolved names"]
    if candidate.get("callProblems"):
        flags.append("calls do not fit: " + "; ".join(candidate["callProblems"]))
    if candidate.get("testsPass") is not None:
        flags.append("tests pass" if candidate["testsPass"] else "tests fail")
    return ", ".join(flags)


def run(args: argparse.Namespace) -> int:
    from quill_cli.lsp_client import StdioLanguageClient, read_source_file

    path, line = args.location
    end_line = args.end_line if args.end_line is not None else line
    if end_line < line:
        logger.error("--end-line %d is before line %d", end_line, line)
        return 2
    if args.insert and end_line != line:
        logger.error("--insert goes after one line; leave out --end-line")
        return 2
    if args.test_timeout <= 0:
        logger.error("--test-timeout must be positive")
        return 2
    if args.budget < 0:
        logger.error("--budget must not be negative")
        return 2
    text = read_source_file(path)
    if text is None:
        return 2
    options: dict[str, Any] = {
        "repairTimeoutS": args.timeout,
        "repairEngineDeadlineS": args.engine_deadline,
        "repairMaxLines": 1000,
        "repairTestTimeoutS": args.test_timeout,
        # Repair does not use retrieval: do not upload the folder for one command.
        "retrieval": False,
    }
    options.update(serving_options(args))
    if args.python:
        options["pythonPath"] = args.python
    root = (args.root or Path.cwd()).resolve()
    request = {
        "startLine": line - 1,
        "endLine": end_line - 1,
        "budget": args.budget,
        "unguided": args.unguided,
        "hint": args.hint,
        "apply": False,
        "insert": args.insert,
        "testCommand": args.test,
    }

    async def repair() -> dict[str, Any]:
        client = StdioLanguageClient(root, options)
        await client.start()
        try:
            uri = client.open(path, text)
            result: dict[str, Any] = await client.execute_command(
                "quill.repair", {"uri": uri, **request}
            )
            return result
        finally:
            await client.stop()

    try:
        result = asyncio.run(repair())
    except JsonRpcException as error:
        logger.error("%s", error.message)
        return 2 if error.code == -32602 else 1
    except Exception as error:  # noqa: BLE001 - one clear line for the user
        logger.error("repair failed: %s", error)
        return 1
    try:
        name = str(path.resolve().relative_to(root))
    except ValueError:
        name = path.name
    candidates = result["candidates"]
    first, last = (line, line - 1) if args.insert else (line - 1, end_line - 1)
    for candidate in candidates:
        candidate["diff"] = candidate_diff(text, first, last, candidate["patch"], name)
        del candidate["edit"]  # an editor's concern; the diff says the same here
        print(
            f"# candidate {candidate['rank']} of {len(candidates)}: "
            f"score {candidate['score']:.3f}, {_flags(candidate)}"
        )
        print(candidate["diff"] or "(no change)\n", end="")
    print(result["message"], file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps({"file": name, "line": line, **result}, indent=2) + "\n")
    return 0 if candidates else 1
