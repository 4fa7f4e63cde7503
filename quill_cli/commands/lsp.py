"""`quill lsp`: the language server over stdio (what editors start)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lsp", help="run the language server over stdio (editors start this)")
    p.add_argument(
        "--address", default=None, help="serving host:port (overrides initializationOptions)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsp_server.app import create_server

    server = create_server()
    if args.address:
        server.settings.serving_address = args.address
        server.pinned_settings["serving_address"] = args.address
    server.start_io()
    return 0
