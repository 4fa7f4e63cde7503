"""API search: ranking over a small fixed catalog with the real embedder, workspace
definitions, incremental updates and bad queries."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quill.v1 import quill_pb2 as pb
from serving.api_search.catalog import StdlibLayer, WorkspaceCatalog, workspace_entries
from serving.api_search.index import ApiIndex, entry_text
from serving.api_search.service import ApiSearchService
from serving.errors import InvalidRequestError
from serving.workspaces import WorkspaceKey


@pytest.fixture(scope="module")
def embedder() -> Any:
    from retrieval.embedding import Embedder

    return Embedder()


def _entry(name: str, signature: str, summary: str, source: str = "stdlib") -> pb.ApiEntry:
    return pb.ApiEntry(
        qualified_name=name, kind="function", signature=signature, summary=summary, source=source
    )


PUREMAGIC = "package:puremagic 1.30"
CATALOG = [
    _entry("csv.reader", "reader(csvfile, dialect='excel')", "Read rows from a CSV file."),
    _entry("json.loads", "loads(s)", "Deserialize a JSON document string to a Python object."),
    _entry("os.listdir", "listdir(path=None)", "Return a list of the names in the directory."),
    _entry("hashlib.sha256", "sha256(data=b'')", "Return a new SHA-256 hash object."),
    _entry("time.sleep", "sleep(seconds)", "Delay execution for a given number of seconds."),
    _entry(
        "puremagic.from_file",
        "from_file(filename, mime=False)",
        "Opens file, attempts to identify content based off magic number.",
        PUREMAGIC,
    ),
    _entry(
        "puremagic.from_string",
        "from_string(string, mime=False)",
        "Reads in string, attempts to identify content.",
        PUREMAGIC,
    ),
    _entry("shutil.copyfile", "copyfile(src, dst)", "Copy data from src to dst."),
]


@pytest.fixture(scope="module")
def index(embedder: Any) -> ApiIndex:
    built = ApiIndex(embedder.dimension)
    built.add(CATALOG, embedder.encode([entry_text(e) for e in CATALOG]))
    return built


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("parse a json string", "json.loads"),
        ("files in a folder", "os.listdir"),
        ("wait a few seconds", "time.sleep"),
        ("detect the file type of a file", "puremagic.from_file"),
        ("from_fi", "puremagic.from_file"),  # a partial name
        ("sha2", "hashlib.sha256"),
        ("shutil.copy", "shutil.copyfile"),
    ],
)
def test_ranking_on_a_fixed_catalog(
    index: ApiIndex, embedder: Any, query: str, expected: str
) -> None:
    hits = index.search(query, embedder.encode([query])[0], 3)
    assert hits[0].entry.qualified_name == expected, [h.entry.qualified_name for h in hits]
    assert hits[0].entry.source
    assert hits[0].score >= hits[-1].score


def test_remove_takes_entries_out_of_every_signal(embedder: Any) -> None:
    built = ApiIndex(embedder.dimension)
    ids = built.add(CATALOG, embedder.encode([entry_text(e) for e in CATALOG]))
    built.remove(ids[1:2])  # json.loads
    hits = built.search("json loads", embedder.encode(["json loads"])[0], 8)
    assert "json.loads" not in [h.entry.qualified_name for h in hits]
    assert len(built) == len(CATALOG) - 1


def test_workspace_entries_carry_path_and_line() -> None:
    text = (
        '"""Billing."""\n\n\ndef compute_invoice_total(items, tax_rate=0.2):\n'
        '    """Sum items with tax."""\n'
    )
    entries = {e.qualified_name: e for e in workspace_entries("shop/billing.py", text)}
    total = entries["shop.billing.compute_invoice_total"]
    assert (total.source, total.path, total.line) == ("workspace", "shop/billing.py", 4)
    assert total.signature == "compute_invoice_total(items, tax_rate=0.2)"
    assert total.summary == "Sum items with tax."
    assert workspace_entries("broken.py", "def f(:\n") == []
    assert workspace_entries("notes.txt", "def f(): pass") == []


@dataclass
class _Change:
    changed_paths: list[str] = field(default_factory=list)
    deleted_paths: list[str] = field(default_factory=list)
    changed_packages: list[str] = field(default_factory=list)


@dataclass
class _Workspace:
    """Only what the catalog reads of serving.workspaces.Workspace."""

    files: dict[str, str]
    package_map: dict[str, pb.ApiPackage] = field(default_factory=dict)

    def paths(self) -> list[str]:
        return sorted(self.files)

    def file_text(self, path: str) -> str | None:
        return self.files.get(path)

    def packages(self) -> dict[str, pb.ApiPackage]:
        return dict(self.package_map)


def test_catalog_follows_changes_incrementally(embedder: Any) -> None:
    vectors = embedder.encode([entry_text(e) for e in CATALOG[:2]])
    stdlib = StdlibLayer(CATALOG[:2], vectors, embedder.dimension)
    workspace = _Workspace({"util.py": "def slugify_title(text):\n    '''Make a URL slug.'''\n"})
    catalog = WorkspaceCatalog(embedder.encode, embedder.dimension, stdlib)
    catalog.load(workspace)
    assert "util.slugify_title" in catalog.names()
    # The standard library's entries are searched, never copied into the workspace's index.
    assert len(catalog.index) == 2  # the module and its function
    assert len(stdlib.index) == 2
    other = WorkspaceCatalog(embedder.encode, embedder.dimension, stdlib)
    other.load(_Workspace({"books.py": "def reconcile_ledger(entries):\n    pass\n"}))
    assert "util.slugify_title" not in other.names()
    assert catalog.members("json") == other.members("json") == ["loads"]
    hits = catalog.search("slugify_title", embedder.encode(["slugify_title"])[0], 3)
    assert hits[0].entry.qualified_name == "util.slugify_title"
    assert "json.loads" in {h.entry.qualified_name for h in other.search("json.loads", None, 5)}

    workspace.files["util.py"] = "def make_slug(text):\n    pass\n"
    workspace.files["other.py"] = "class Ledger:\n    def post(self, amount):\n        pass\n"
    package = pb.ApiPackage(name="pkgx", version="1", digest="d1", entries=[CATALOG[5]])
    workspace.package_map["pkgx"] = package
    change = _Change(changed_paths=["util.py", "other.py"], changed_packages=["pkgx"])
    asyncio.run(catalog.apply(workspace, change))
    names = catalog.names()
    assert {"util.make_slug", "other.Ledger.post", "puremagic.from_file"} <= names
    assert "util.slugify_title" not in names

    del workspace.files["other.py"]
    workspace.package_map.clear()
    asyncio.run(
        catalog.apply(workspace, _Change(deleted_paths=["other.py"], changed_packages=["pkgx"]))
    )
    assert "other.Ledger" not in catalog.names()
    assert "puremagic.from_file" not in catalog.names()
    assert "json.loads" in catalog.names()


class _Registry:
    """Workspaces of tenant "t"."""

    def __init__(self, workspaces: dict[str, _Workspace]) -> None:
        self.workspaces = {WorkspaceKey("t", wid): w for wid, w in workspaces.items()}
        for workspace in workspaces.values():
            workspace.add_listener = lambda callback: None  # type: ignore[attr-defined]

    def get(self, key: WorkspaceKey) -> Any:
        return self.workspaces.get(key)

    resident = get


class _SlowOnLedgers:
    """The real embedder, but slow to embed anything about ledgers (a large workspace)."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self.dimension = embedder.dimension

    def encode(self, texts: list[str]) -> Any:
        if any("ledger" in text for text in texts):
            time.sleep(1.5)
        return self._embedder.encode(texts)


def test_service_search_and_bad_queries(embedder: Any, tmp_path: Path) -> None:
    workspace = _Workspace(
        {"shop/billing.py": "def compute_invoice_total(items):\n    '''Sum the invoice.'''\n"}
    )
    slow = _Workspace({"books.py": "def reconcile_ledger(entries):\n    pass\n"})
    slow_embedder = _SlowOnLedgers(embedder)
    registry = _Registry({"ws": workspace, "slow": slow})
    service = ApiSearchService(lambda: slow_embedder, tmp_path, registry, None, lambda: embedder)
    # The first call also waits for the standard library's part, embedded here from scratch:
    # on a loaded 2-core CI machine that alone can take longer than the default 5 s.
    service.config.load_wait_s = 120

    async def run() -> None:
        # The first SearchApi call waits for the workspace's part of the catalog.
        response = await service.handle(
            "t", pb.SearchApiRequest(workspace_id="ws", query="total of an invoice", limit=3)
        )
        assert response.hits[0].entry.qualified_name == "shop.billing.compute_invoice_total"
        assert response.hits[0].entry.source == "workspace"
        assert response.latency_ms > 0
        stdlib_only = await service.handle(
            "t", pb.SearchApiRequest(query="list files in a directory")
        )
        names = [h.entry.qualified_name for h in stdlib_only.hits]
        assert names[0] == "os.listdir"
        joined = await service.handle(
            "t", pb.SearchApiRequest(workspace_id="ws", query="join paths")
        )
        assert joined.hits[0].entry.qualified_name == "os.path.join"
        assert all(h.entry.source == "stdlib" for h in stdlib_only.hits)
        # A person's search waits for a workspace still being taken in (here 1.5 s)...
        ledger = await service.handle("t", pb.SearchApiRequest(workspace_id="slow", query="ledger"))
        assert ledger.hits[0].entry.qualified_name == "books.reconcile_ledger"
        # ...but only so long: then it answers from what the catalog holds.
        service.config.load_wait_s = 0.1
        service._catalogs.pop(WorkspaceKey("t", "slow"))  # a fresh catalog, as after a restart
        started = time.perf_counter()
        await service.handle("t", pb.SearchApiRequest(workspace_id="slow", query="ledger"))
        assert time.perf_counter() - started < 1.4
        for query, message in (
            ("", "empty"),
            ("   ", "empty"),
            ("x" * 5000, "limit is 1000"),
            ("a\x00b", "NUL"),
        ):
            with pytest.raises(InvalidRequestError, match=message):
                await service.handle("t", pb.SearchApiRequest(query=query))
        with pytest.raises(InvalidRequestError, match="exceeds"):
            await service.handle("t", pb.SearchApiRequest(query="json", limit=10_000))

    asyncio.run(run())
    assert any(p.name.startswith("stdlib-") for p in tmp_path.iterdir())  # cached on disk
    assert np.load(next(tmp_path.glob("stdlib-*.npy"))).shape[1] == embedder.dimension
