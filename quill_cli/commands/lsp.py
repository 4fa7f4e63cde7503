"""`quill lsp`: the language server over stdio (what editors start)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lsp", help="run the language server over stdio (editors start this)")
    p.add_argument(
        "--address", default=None, help="serving host:port (overrides initializationOptions)"
    )
    p.add_argument(
        "--token-file",
        default=None,
        help="file holding the bearer token for serving (overrides initializationOptions; "
        "default: QUILL_TOKEN, else the local token for a serving on this machine)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsp_server.app import create_server

    server = create_server()
    # Given on the command line, these win over the editor's initializationOptions.
    for name, value in (("serving_address", args.address), ("serving_token_file", args.token_file)):
        if value:
            setattr(server.settings, name, value)
            server.pinned_settings[name] = value
    server.start_io()
    return 0
