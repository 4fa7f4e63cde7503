from __future__ import annotations

from pathlib import Path

from lsp_server.workspace_identity import path_of, relative_path


def test_paths_come_from_uris_through_pygls(tmp_path: Path) -> None:
    root = tmp_path / "my project"
    inside = root / "src" / "a b.py"
    assert path_of(inside.as_uri()) == inside
    assert path_of("untitled:Untitled-1") is None
    assert relative_path(root.as_uri(), inside.as_uri()) == "src/a b.py"
    assert relative_path(root.as_uri(), (tmp_path / "other.py").as_uri()) == "other.py"
    assert relative_path(root.as_uri(), "untitled:Untitled-1") == "Untitled-1"
    assert relative_path(None, "vscode-notebook-cell:/w/n%20b.ipynb#W1") == "n b.ipynb"
