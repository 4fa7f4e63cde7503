"""`quill complete FILE:LINE:COL`: one completion through a real `quill lsp` subprocess, printed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from quill_cli.serving_args import add_serving_arguments, serving_options

logger = logging.getLogger(__name__)


def _parse_location(text: str) -> tuple[Path, int, int]:
    path, _, rest = text.rpartition(":")
    path2, _, line = path.rpartition(":")
    if not path2 or not line.isdigit() or not rest.isdigit():
        raise argparse.ArgumentTypeError(f"expected FILE:LINE:COL (1-based), got {text!r}")
    if int(line) < 1 or int(rest) < 1:
        raise argparse.ArgumentTypeError("LINE and COL are 1-based")
    return Path(path2), int(line), int(rest)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="one completion through the language server, printed")
    p.add_argument(
        "location", type=_parse_location, metavar="FILE:LINE:COL", help="1-based line and column"
    )
    add_serving_arguments(p)
    p.add_argument("--mode", choices=("auto", "single", "multi"), default="auto")
    p.add_argument(
        "--root", type=Path, default=None, help="workspace root (default: current folder)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the model")
    p.add_argument(
        "--retrieval",
        action="store_true",
        help="sync the workspace to serving first so the prompt can use it (slow the first time)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quill_cli.lsp_client import StdioLanguageClient, read_source_file

    path, line, column = args.location
    text = read_source_file(path)
    if text is None:
        return 2
    # One-shot: the whole suggestion, not the first line an editor would show while the block
    # is still being written.
    options: dict[str, Any] = {
        "completionMode": args.mode,
        "requestTimeoutS": args.timeout,
        "streamFirstLine": False,
        "multiLineDelayMs": 0,
        # Uploading and indexing the whole folder for one suggestion costs far more than it
        # brings; editors keep the workspace synced instead.
        "retrieval": args.retrieval,
    }
    options.update(serving_options(args))

    async def run() -> int:
        client = StdioLanguageClient(args.root or Path.cwd(), options)
        await client.start()
        try:
            uri = client.open(path, text)
            items = await client.inline_completion(uri, line - 1, column - 1)
        finally:
            await client.stop()
        for message in client.messages:
            print(message, file=sys.stderr)
        if not items:
            print("(no suggestion)", file=sys.stderr)
            return 1
        print(
            items[0].insert_text
            if isinstance(items[0].insert_text, str)
            else items[0].insert_text.value
        )
        return 0

    try:
        return asyncio.run(run())
    except Exception as error:  # noqa: BLE001 - one clear line for the user
        logger.error("completion failed: %s", error)
        return 1
