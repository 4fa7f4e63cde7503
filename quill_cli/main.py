"""The `quill` command: one module per subcommand in quill_cli/commands/. Each imports its heavy
modules only when it runs, so `quill lsp` never pays for vLLM or torch."""

from __future__ import annotations

import argparse
import logging
import sys

from quill import envs
from quill_cli.commands import (
    api_search,
    bench,
    complete,
    index,
    lsp,
    model,
    repair,
    serve,
    stats,
)
from quill_cli.config_flags import DeferredFlagsParser

# In the order `quill --help` lists them.
COMMANDS = (serve, lsp, complete, api_search, model, bench, index, stats, repair)


def _configure_logging(level: str) -> None:
    # stderr only: stdout is the LSP channel for `quill lsp` and the result for `quill complete`.
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pygls logs every feature registration and message at INFO; keep it to problems.
    if level.upper() != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quill", description="Quill: AI code authoring backend")
    parser.add_argument("--log-level", default=envs.log_level(), help="stderr log level")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=DeferredFlagsParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    return int(args.func(args) or 0)
