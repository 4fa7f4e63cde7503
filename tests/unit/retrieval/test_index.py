from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.embedding import Embedder
from retrieval.index import INDEX_FILE, WorkspaceIndex

BILLING = '''def compute_invoice_total(items, tax_rate):
    """Sum of prices plus tax."""
    return sum(item.price for item in items) * (1 + tax_rate)
'''
GEOMETRY = """class Circle:
    def area(self):
        return 3.14159 * self.radius ** 2
"""


def test_search_update_delete(embedder: Embedder) -> None:
    index = WorkspaceIndex(embedder)
    index.update_file("shop/billing.py", BILLING)
    index.update_file("geo/shapes.py", GEOMETRY)
    hits = index.search("total = compute_invoice_total(cart.items, 0.2)", 2)
    assert hits[0].path == "shop/billing.py"
    assert (hits[0].start_line, hits[0].end_line) == (1, 3)
    assert "compute_invoice_total" in hits[0].text
    assert hits[0].score > hits[1].score

    # Update: the old chunks go, the new ones are searchable.
    index.update_file("shop/billing.py", "def refund_order(order):\n    return order.paid\n")
    assert all("compute_invoice_total" not in h.text for h in index.search("invoice total", 5))
    assert index.search("refund the order", 1)[0].text.startswith("def refund_order")
    assert index.chunk_count == 2

    # Delete.
    assert index.remove_file("shop/billing.py")
    assert not index.remove_file("shop/billing.py")
    assert [h.path for h in index.search("refund order", 5)] == ["geo/shapes.py"]
    assert index.paths() == ["geo/shapes.py"]


def test_exclusions(embedder: Embedder) -> None:
    index = WorkspaceIndex(embedder)
    index.update_file("a.py", BILLING + "\n\n" + GEOMETRY)
    assert [(h.start_line, h.end_line) for h in index.search("circle area", 5)] == [(6, 8), (1, 3)]
    assert [h.start_line for h in index.search("circle area", 5, "a.py", (5, 9))] == [1]
    assert index.search("circle area", 5, exclude_path="a.py") == []
    assert index.search("   ", 5) == []


def test_save_and_load_round_trip(embedder: Embedder, tmp_path: Path) -> None:
    index = WorkspaceIndex(embedder, tmp_path)
    index.update_file("shop/billing.py", BILLING, "d1")
    index.update_file("geo/shapes.py", GEOMETRY, "d2")
    index.remove_file("geo/shapes.py")
    index.save()
    assert not index.dirty
    loaded = WorkspaceIndex.load(embedder, tmp_path)
    assert loaded.paths() == ["shop/billing.py"]
    assert loaded.file_digest("shop/billing.py") == "d1"
    assert loaded.search("invoice total with tax", 1)[0].path == "shop/billing.py"
    # New ids never collide with loaded ones.
    loaded.update_file("geo/shapes.py", GEOMETRY)
    assert loaded.chunk_count == 2


def test_a_damaged_index_file_is_ignored(embedder: Embedder, tmp_path: Path) -> None:
    (tmp_path / INDEX_FILE).write_bytes(b"QUILLIX1garbage")
    (tmp_path / ".index.quill.abc").write_bytes(b"half-written")
    loaded = WorkspaceIndex.load(embedder, tmp_path)
    assert loaded.paths() == []
    assert not (tmp_path / ".index.quill.abc").exists()


def _write_tree(root: Path, count: int) -> None:
    for number in range(count):
        (root / f"module_{number:03d}.py").write_text(
            f"def function_{number}(value):\n    return value + {number}\n\n\n"
            f"class Thing{number}:\n    def method(self):\n        return {number}\n"
        )


def _quill_index(root: Path, data: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "quill", "index", str(root), "--data-dir", str(data), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "QUILL_LOG_LEVEL": "WARNING"},
    )


def test_sigkill_mid_indexing_keeps_finished_files_and_redoes_the_rest(
    embedder: Embedder, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    total = 120
    _write_tree(root, total)
    data = tmp_path / "data"
    indexer = _quill_index(root, data, "--batch-files", "4")
    # Kill once a first batch is saved, well before the end (a loaded machine may take
    # minutes just to start the model).
    deadline = time.monotonic() + 600
    while not (data / INDEX_FILE).exists():
        assert indexer.poll() is None, indexer.communicate()
        if time.monotonic() > deadline:
            indexer.kill()
            pytest.fail("the indexer saved no batch within 600 s")
        time.sleep(0.05)
    time.sleep(0.5)
    indexer.send_signal(signal.SIGKILL)
    indexer.wait()
    assert indexer.returncode == -signal.SIGKILL

    survived = WorkspaceIndex.load(embedder, data)
    kept = survived.paths()
    assert 0 < len(kept) < total, f"{len(kept)} files survived"
    for path in kept:  # each file listed has exactly its chunks
        assert [c.kind for c in survived.chunks_of(path)] == ["definition", "definition"]
    assert survived.chunk_count == 2 * len(kept)

    rerun = _quill_index(root, data)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    summary = json.loads(out.splitlines()[0])
    assert summary["reused"] == len(kept)
    assert summary["indexed"] == total - len(kept)
    assert summary["chunks"] == 2 * total
    assert WorkspaceIndex.load(embedder, data).chunk_count == 2 * total
