"""Crash-safe files: write to a temporary file in the same directory, fsync, rename, fsync dir.

A reader sees either the previous complete file or the new complete file, never a torn one,
whatever moment the writer is killed at.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def remove_stale_temporaries(directory: Path) -> None:
    """Temporary files left by a writer that was killed before its rename."""
    if not directory.is_dir():
        return
    for leftover in directory.glob(".*.*"):
        with contextlib.suppress(OSError):
            leftover.unlink()
