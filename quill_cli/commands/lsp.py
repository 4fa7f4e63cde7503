"""`quill lsp`: the language server over stdio (what editors start)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from quill import envs


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lsp", help="run the language server over stdio (editors start this)")
    p.add_argument(
        "--address", default=None, help="serving host:port (overrides initializationOptions)"
    )
    p.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=envs.lsp_max_body_bytes(),
        help="largest message body read (QUILL_LSP_MAX_BODY_BYTES; default 64 MiB)",
    )
    p.add_argument(
        "--max-header-bytes",
        type=_positive_int,
        default=envs.lsp_max_header_bytes(),
        help="largest header block read (QUILL_LSP_MAX_HEADER_BYTES; default 8 KiB)",
    )
    p.add_argument(
        "--body-timeout-s",
        type=_positive_float,
        default=envs.lsp_body_timeout_s(),
        help="a message whose bytes stop coming for this long is taken as cut (default 5)",
    )
    p.add_argument(
        "--token-file",
        default=None,
        help="file holding the bearer token for serving (overrides initializationOptions; "
        "default: QUILL_TOKEN, else the local token for a serving on this machine)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsp_server import log_limit
    from lsp_server.app import create_server
    from lsp_server.framing import FramingLimits
    from lsp_server.transport import serve_stdio

    limits = FramingLimits(
        max_header_bytes=args.max_header_bytes,
        max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout_s,
    )
    server = create_server()
    # Given on the command line, these win over the editor's initializationOptions.
    for name, value in (("serving_address", args.address), ("serving_token_file", args.token_file)):
        if value:
            setattr(server.settings, name, value)
            server.pinned_settings[name] = value
    rate_limit = log_limit.install(logging.getLevelName(logging.getLogger().level))
    try:
        code = serve_stdio(server.protocol, limits)
    finally:
        if rate_limit is not None:
            rate_limit.flush()
    # Leave now: a thread still working (an API catalog being extracted, say) must not keep
    # the editor's server alive after `exit`; everything the session owed was sent at shutdown.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # stdout is closed after `exit`
            stream.flush()
    os._exit(code)
