"""Every environment variable Quill reads, in one place.

- QUILL_CACHE_DIR: converted models, the set-up's virtual environment and run files
  (default $XDG_CACHE_HOME/quill, else ~/.cache/quill).
- QUILL_SERVING_ADDRESS: host:port of serving for the language server (default 127.0.0.1:50051).
- QUILL_LOG_LEVEL: level of the CLI's stderr logging (default INFO).
- QUILL_LSP_MAX_BODY_BYTES / QUILL_LSP_MAX_HEADER_BYTES: the largest message body (default 64 MiB)
  and header block (default 8 KiB) `quill lsp` reads; larger ones are skipped and refused.
- QUILL_LSP_BODY_TIMEOUT_S: seconds a partly received message may wait for its next bytes before
  `quill lsp` takes it as cut (default 5).
- QUILL_TOKEN: one bearer token. `quill serve` accepts it (tenant "default") in place of the
  local token it would otherwise create; `quill lsp` and the other clients send it when no
  setting names a token (docs/security.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

DEFAULT_SERVING_ADDRESS = "127.0.0.1:50051"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9400"

# Variables that keep Hugging Face libraries from ever reaching the network.
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def cache_dir() -> Path:
    explicit = os.environ.get("QUILL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "quill"


def serving_address() -> str:
    return os.environ.get("QUILL_SERVING_ADDRESS") or DEFAULT_SERVING_ADDRESS


def token() -> str:
    return os.environ.get("QUILL_TOKEN", "").strip()


def log_level() -> str:
    return (os.environ.get("QUILL_LOG_LEVEL") or "INFO").upper()


# Text, not numbers: `quill lsp` parses them like its flags, so a bad value is its error alone.
def lsp_max_body_bytes() -> str:
    return os.environ.get("QUILL_LSP_MAX_BODY_BYTES") or str(64 * 1024 * 1024)


def lsp_max_header_bytes() -> str:
    return os.environ.get("QUILL_LSP_MAX_HEADER_BYTES") or str(8 * 1024)


def lsp_body_timeout_s() -> str:
    return os.environ.get("QUILL_LSP_BODY_TIMEOUT_S") or "5"


def force_offline() -> None:
    """Make this process (and the engine processes it starts) offline for Hugging Face."""
    os.environ.update(_OFFLINE)


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in _OFFLINE}
    os.environ.update(_OFFLINE)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
