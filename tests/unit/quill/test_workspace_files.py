from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from quill.workspace_files import walk_workspace


def test_bad_files_are_skipped_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "good.py").write_text("def ok():\n    return 1\n")
    (root / "latin1.py").write_bytes(b"name = '\xe9t\xe9'\n")
    (root / "blob.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    (root / "huge.py").write_text("x = 1\n" * 1000)
    locked = root / "locked.py"
    locked.write_text("secret = 1\n")
    real_read = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        # Tests run as root here, which reads any file: refuse this one as an OS would.
        if path.name == "locked.py":
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    outside = tmp_path / "outside.py"
    outside.write_text("leak = 1\n")
    os.symlink(outside, root / "escape.py")
    os.symlink(root / "loop_a", root / "loop_b")
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root, root / "pkg" / "cycle")  # a directory loop
    os.symlink(root / "pkg" / "good.py", root / "alias.py")  # inside the root: kept
    skipped: dict[str, str] = {}
    with caplog.at_level(logging.DEBUG, logger="quill.workspace_files"):
        files = {f.path: f.text for f in walk_workspace(root, 1000, skipped.__setitem__)}
        list(walk_workspace(root, 1000))  # without a handler: log lines
    assert sorted(files) == ["alias.py", "pkg/good.py"]
    assert files["alias.py"] == files["pkg/good.py"]
    assert skipped["latin1.py"] == "not UTF-8"
    assert skipped["blob.bin"] == "binary"
    assert skipped["huge.py"].startswith("too large")
    assert skipped["escape.py"] == "symlink escapes the workspace root"
    assert skipped["loop_a"] == skipped["loop_b"] == "broken or looping symlink"
    assert skipped["pkg/cycle"] == "symlinked directory (not followed)"
    assert skipped["locked.py"] == "unreadable (PermissionError)"
    assert "skipped latin1.py: not UTF-8" in caplog.text


def test_gitignore_rules_apply_per_directory(tmp_path: Path) -> None:
    root = tmp_path
    (root / ".gitignore").write_text("*.log\nbuild/\n!keep.log\n")
    (root / "src" / "gen").mkdir(parents=True)
    (root / "src" / ".gitignore").write_text("gen/\nlocal_*.py\n")
    (root / "build").mkdir()
    (root / "node_modules").mkdir()
    for path in ("a.py", "debug.log", "keep.log", "build/out.py", "node_modules/x.js",
                 "src/b.py", "src/local_cfg.py", "src/gen/c.py"):  # fmt: skip
        (root / path).write_text("x = 1\n")
    paths = [f.path for f in walk_workspace(root)]
    assert paths == ["a.py", "keep.log", "src/b.py"]
