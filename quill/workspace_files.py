"""The files of a workspace worth indexing: text, not ignored, not too large, inside the root.

Shared by the language server (which syncs them to serving) and `quill index`, so it lives in
this neutral package and imports only the standard library and pathspec. Everything skipped is
reported through `on_skip(path, reason)` (and logged at DEBUG), never raised:
- .gitignore'd paths (every .gitignore in the tree, via pathspec's git semantics), `.git` and
  tool caches;
- files over `max_file_bytes`, binary files (a NUL byte in the first 8 KiB), invalid UTF-8,
  unreadable files;
- symlinks whose target leaves the root or loops; symlinked directories are not followed, so a
  directory loop cannot recur.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 1_000_000
_SNIFF_BYTES = 8192
_ALWAYS_SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", ".tox", ".mypy_cache",
     ".ruff_cache", ".pytest_cache"}
)  # fmt: skip

SkipHandler = Callable[[str, str], None]


@dataclass(frozen=True)
class WorkspaceFileText:
    # Relative to the root, '/'-separated.
    path: str
    text: str


def _log_skip(path: str, reason: str) -> None:
    logger.debug("skipped %s: %s", path, reason)


def read_text_file(path: Path, max_file_bytes: int) -> tuple[str | None, str]:
    """(text, "") or (None, reason) for a file that must not be indexed."""
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            return None, f"too large ({size} bytes)"
        data = path.read_bytes()
    except (OSError, RuntimeError) as error:  # RuntimeError: symlink loop on some Pythons
        return None, f"unreadable ({error.__class__.__name__})"
    if len(data) > max_file_bytes:
        return None, "too large"
    if b"\x00" in data[:_SNIFF_BYTES]:
        return None, "binary"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, "not UTF-8"


def _ignore_spec(directory: Path) -> Any | None:
    gitignore = directory / ".gitignore"
    if not gitignore.is_file():
        return None
    try:
        import pathspec

        return pathspec.GitIgnoreSpec.from_lines(
            gitignore.read_text("utf-8", "replace").splitlines()
        )
    except (OSError, ValueError) as error:
        logger.info("ignoring unreadable %s: %s", gitignore, error)
        return None


def walk_workspace(
    root: Path,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    on_skip: SkipHandler | None = None,
) -> Iterator[WorkspaceFileText]:
    """Text files under `root` in a stable order (sorted per directory)."""
    skip = on_skip or _log_skip
    root = root.resolve()
    # (directory relative to root, its spec) for every .gitignore on the way down.
    specs: list[tuple[str, Any]] = []

    def ignored(relative: str, is_dir: bool) -> bool:
        for base, spec in specs:
            if base and not relative.startswith(base + "/"):
                continue
            inner = relative[len(base) + 1 :] if base else relative
            if spec.match_file(inner + "/" if is_dir else inner):
                return True
        return False

    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        current = Path(directory)
        relative_dir = current.relative_to(root).as_posix()
        relative_dir = "" if relative_dir == "." else relative_dir
        specs = [
            (b, s)
            for b, s in specs
            if not b or relative_dir == b or relative_dir.startswith(b + "/")
        ]
        spec = _ignore_spec(current)
        if spec is not None:
            specs.append((relative_dir, spec))
        kept = []
        for name in sorted(dirnames):
            relative = f"{relative_dir}/{name}" if relative_dir else name
            if name in _ALWAYS_SKIPPED_DIRS or ignored(relative, True):
                continue
            if (current / name).is_symlink():
                skip(relative, "symlinked directory (not followed)")
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            relative = f"{relative_dir}/{name}" if relative_dir else name
            if name == ".gitignore" or ignored(relative, False):
                continue
            path = current / name
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    skip(relative, "broken or looping symlink")
                    continue
                if not target.is_relative_to(root):
                    skip(relative, "symlink escapes the workspace root")
                    continue
                if not target.is_file():
                    continue
            elif not path.is_file():
                continue
            text, reason = read_text_file(path, max_file_bytes)
            if text is None:
                skip(relative, reason)
                continue
            yield WorkspaceFileText(relative, text)
