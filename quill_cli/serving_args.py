"""The flags with which a `quill` command that starts `quill lsp` reaches serving: its address
and how it connects (token file, TLS, mutual TLS), passed on as the language server's settings.
Without them the language server's defaults hold (docs/security.md)."""

from __future__ import annotations

import argparse
from typing import Any

# flag (without --) -> the language server's initializationOptions key
_FLAGS = {
    "address": "servingAddress",
    "token-file": "servingTokenFile",
    "ca-file": "servingCaFile",
    "client-cert": "servingClientCert",
    "client-key": "servingClientKey",
}


def add_serving_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("serving connection")
    g.add_argument("--address", default=None, help="serving host:port")
    g.add_argument("--token-file", default=None, help="file holding the bearer token")
    g.add_argument("--tls", action="store_true", help="TLS to serving")
    g.add_argument("--ca-file", default=None, help="CA (PEM) verifying serving's certificate")
    g.add_argument("--client-cert", default=None, help="mutual TLS: client certificate (PEM)")
    g.add_argument("--client-key", default=None, help="mutual TLS: client key (PEM)")


def serving_options(args: argparse.Namespace) -> dict[str, Any]:
    """The initializationOptions for the flags given."""
    options: dict[str, Any] = {
        key: getattr(args, flag.replace("-", "_"))
        for flag, key in _FLAGS.items()
        if getattr(args, flag.replace("-", "_"))
    }
    if args.tls:
        options["servingTls"] = True
    return options
