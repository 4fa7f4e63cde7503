"""Secrets one user keeps on one machine, in the cache folder, readable by that user only.

- `auth/token`: the bearer token `quill serve` creates on its first start when no token was
  configured, and that `quill lsp` (and every other client) sends to a serving on this machine,
  the way Jupyter's token works: another local user can reach the port but not read the file.
- `auth/workspace-key`: the key of the HMAC that turns a workspace root into the id sent to
  serving (lsp_server/workspace_identity.py), so the id cannot be derived from a path alone.

Both are created once, atomically (mode 0600 in a 0700 folder), and then only read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from quill import envs
from quill.tokens import new_token

logger = logging.getLogger(__name__)


def auth_dir() -> Path:
    return envs.cache_dir() / "auth"


def local_token_path() -> Path:
    return auth_dir() / "token"


def workspace_key_path() -> Path:
    return auth_dir() / "workspace-key"


def read_secret(path: Path) -> str | None:
    """The secret in `path` (stripped), or None when it is missing or empty."""
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def ensure_secret(path: Path, make: Callable[[], str] = new_token) -> str:
    """The secret in `path`, created with `make()` when missing (mode 0600, atomic, race-free:
    of several processes starting at once, one creates it and all read the same)."""
    existing = read_secret(path)
    if existing is not None:
        _restrict(path)
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.parent.chmod(0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(make() + "\n")
        try:
            os.link(temporary, path)  # fails if another process created it meanwhile
            logger.info("created %s (readable by this user only)", path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
    secret = read_secret(path)
    if secret is None:
        raise OSError(f"{path} is empty")
    return secret


def _restrict(path: Path) -> None:
    """Take group and other permissions away from a secret someone loosened."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            path.chmod(0o600)
            logger.warning("%s was readable by other users; it is 0600 now", path)
    except OSError as error:
        logger.warning("cannot check the permissions of %s: %s", path, error)


def workspace_key() -> bytes:
    """The per-user key of workspace ids (created on first use)."""
    return ensure_secret(workspace_key_path(), lambda: secrets.token_hex(32)).encode()
