"""`quill api-search "QUERY" [--workspace PATH] [--json PATH]`: the editor's API search on the
command line, through a real `quill lsp` (which syncs the workspace and its packages first)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from quill_cli.serving_args import add_serving_arguments, serving_options

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api-search", help="search the API catalog (workspace, packages, stdlib)")
    p.add_argument("query", help='a phrase ("read a csv file") or a partial name ("from_fi")')
    p.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="workspace root to sync and search (default: the standard library only)",
    )
    p.add_argument("--limit", type=int, default=10)
    add_serving_arguments(p)
    p.add_argument("--json", type=Path, default=None, help="also write the hits here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quill_cli.lsp_client import StdioLanguageClient

    if args.workspace is not None and not args.workspace.is_dir():
        logger.error("%s is not a folder", args.workspace)
        return 2
    options: dict[str, Any] = {"retrieval": args.workspace is not None}
    options.update(serving_options(args))

    async def search() -> dict[str, Any]:
        import tempfile

        with tempfile.TemporaryDirectory() as empty:
            root = args.workspace or Path(empty)
            client = StdioLanguageClient(root, options)
            await client.start()
            try:
                result: dict[str, Any] = await client.execute_command(
                    "quill.searchApi", {"query": args.query, "limit": args.limit}
                )
                return result
            finally:
                await client.stop()

    try:
        result = asyncio.run(search())
    except Exception as error:  # noqa: BLE001 - one clear line for the user
        logger.error("%s", error)  # the language server says what failed
        return 1
    for item in result["items"]:
        where = f"{item['path']}:{item['line']}" if item["path"] else item["source"]
        print(f"{item['insertText']:<50} {where}")
        if item["summary"]:
            print(f"    {item['summary']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if not result["items"]:
        print("(no results)", file=sys.stderr)
        return 1
    return 0
