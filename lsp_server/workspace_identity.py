"""How the language server names the workspace and its files to serving.

Serving never sees the user's paths: the workspace is an opaque id, and files are paths relative
to the workspace root ('/'-separated). URIs become paths through pygls, which handles percent
escapes and Windows drive letters.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pygls.uris import to_fs_path, urlparse


def workspace_id(root_uri: str | None) -> str:
    """A stable opaque id of the workspace root."""
    return hashlib.sha256((root_uri or "").encode()).hexdigest()[:16]


def path_of(uri: str) -> Path | None:
    """The local file a `file:` URI names; None for other schemes."""
    if not uri.startswith("file:"):
        return None
    path = to_fs_path(uri)
    return Path(path) if path else None


def root_path(root_uri: str | None) -> Path | None:
    """The workspace root as a local directory; None if there is none."""
    path = path_of(root_uri or "")
    return path if path is not None and path.is_dir() else None


def relative_path(root_uri: str | None, uri: str) -> str:
    """`uri`'s path relative to the root ('/'-separated); its file name when outside the root."""
    path = path_of(uri)
    if path is None:  # untitled:, vscode-notebook-cell: ...
        return urlparse(uri)[2].rsplit("/", 1)[-1]
    root = path_of(root_uri or "")
    if root is not None and path.is_relative_to(root) and path != root:
        return path.relative_to(root).as_posix()
    return path.name
