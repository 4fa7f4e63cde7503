"""The content digest client and serving agree on: which files and packages serving already has
is decided by comparing these, so both sides import this one function."""

from __future__ import annotations

import hashlib


def content_digest(text: str) -> str:
    """sha256 of the text's UTF-8 bytes (lone surrogates kept), as 64 hex digits."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
