"""Bearer tokens: how they are made and how the token file names them (docs/security.md).

Shared by serving (which checks them), `quill serve` (which creates the local one) and
`quill token` (which makes them for operators).
"""

from __future__ import annotations

import hashlib
import re
import secrets

# Tokens are greppable in logs and leaked files by this prefix (like GitHub's `ghp_`).
TOKEN_PREFIX = "quill_"
HASH_SCHEME = "sha256:"
# Tenant names: what the token file's first column may hold.
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_token() -> str:
    """A fresh bearer token: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """How a token appears in the token file. SHA-256 rather than a slow password hash: tokens
    are 256 random bits, which no dictionary guesses, and every RPC checks one."""
    return HASH_SCHEME + hashlib.sha256(token.encode("utf-8")).hexdigest()
