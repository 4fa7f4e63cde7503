"""The workspace id sent to serving: stable for one user, unrelated across users, and not a
function of the path alone."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from lsp_server import workspace_identity as identity
from lsp_server.workspace_identity import path_of, relative_path
from quill import local_auth


def _id_as(user_cache: Path, root_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("QUILL_CACHE_DIR", str(user_cache))
    identity._key.cache_clear()
    try:
        return identity.workspace_id(root_uri)
    finally:
        identity._key.cache_clear()


def test_ids_differ_between_users_and_are_stable_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = "file:///workspace"
    alice = _id_as(tmp_path / "alice", root, monkeypatch)
    bob = _id_as(tmp_path / "bob", root, monkeypatch)
    assert alice != bob
    assert _id_as(tmp_path / "alice", root, monkeypatch) == alice
    assert _id_as(tmp_path / "alice", "file:///other", monkeypatch) != alice
    # Not the old sha256(rootUri) id anyone could compute from the path.
    assert hashlib.sha256(root.encode()).hexdigest()[:16] not in alice
    assert len(alice) == 32 and int(alice, 16) >= 0
    monkeypatch.setenv("QUILL_CACHE_DIR", str(tmp_path / "alice"))
    key = local_auth.workspace_key_path()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_paths_come_from_uris_through_pygls(tmp_path: Path) -> None:
    root = tmp_path / "my project"
    inside = root / "src" / "a b.py"
    assert path_of(inside.as_uri()) == inside
    assert path_of("untitled:Untitled-1") is None
    assert relative_path(root.as_uri(), inside.as_uri()) == "src/a b.py"
    assert relative_path(root.as_uri(), (tmp_path / "other.py").as_uri()) == "other.py"
    assert relative_path(root.as_uri(), "untitled:Untitled-1") == "Untitled-1"
    assert relative_path(None, "vscode-notebook-cell:/w/n%20b.ipynb#W1") == "n b.ipynb"
