"""`quill token`: make bearer tokens for serving's token file, and show the local token.

`quill token new TENANT --token-file FILE` makes a token, appends its hash to FILE (created
0600) and prints the token once: give it to the user, it is not stored anywhere else.
`quill token hash` prints the line for a token read from stdin (for a file kept elsewhere).
`quill token local` prints where the local token is and whether it exists (never the token).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="bearer tokens for serving (docs/security.md)")
    actions = p.add_subparsers(dest="token_action", required=True)
    new = actions.add_parser("new", help="make a token, append its hash to the token file")
    new.add_argument("tenant", help="who the token is for (letters, digits, '.', '_', '-')")
    new.add_argument("--token-file", type=Path, required=True, help="the file serving reads")
    actions.add_parser("hash", help="the token file line's hash of a token read from stdin")
    actions.add_parser("local", help="where the local token is")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quill import local_auth
    from quill.tokens import TENANT_PATTERN, hash_token, new_token

    if args.token_action == "hash":
        token = sys.stdin.readline().strip()
        if not token:
            print("quill token hash: no token on stdin", file=sys.stderr)
            return 2
        print(hash_token(token))
        return 0
    if args.token_action == "local":
        path = local_auth.local_token_path()
        state = "exists" if path.exists() else "not created yet (quill serve creates it)"
        print(f"{path} ({state})")
        return 0
    if not TENANT_PATTERN.fullmatch(args.tenant):
        print(
            f"quill token new: tenant {args.tenant!r} must be 1-64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
            file=sys.stderr,
        )
        return 2
    token = new_token()
    _append_line(args.token_file, f"{args.tenant} {hash_token(token)}\n")
    print(token)
    return 0


def _append_line(path: Path, line: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(line)
