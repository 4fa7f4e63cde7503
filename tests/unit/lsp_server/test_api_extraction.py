"""API extraction on the language-server side: real installed packages, never imported."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from lsp_server import api_extraction
from lsp_server.api_extraction import PackageExtractor, locate, package_catalog
from quill import python_api


def _workspace(tmp_path: Path, source: str) -> Path:
    (tmp_path / "app.py").write_text(source)
    (tmp_path / "helpers.py").write_text("def helper():\n    pass\n")
    return tmp_path


def test_installed_package_is_read_statically_with_reexports(tmp_path: Path) -> None:
    root = _workspace(tmp_path, "import puremagic\nimport json\nimport helpers\n")
    packages = asyncio.run(package_catalog(root, None))
    assert [p.name for p in packages] == ["puremagic"]  # stdlib and local modules are not packages
    package = packages[0]
    entries = {e.qualified_name: e for e in package.entries}
    # `puremagic/__init__.py` does `from puremagic.main import *`: users write puremagic.from_file.
    from_file = entries["puremagic.from_file"]
    assert from_file.kind == "function"
    assert from_file.signature.startswith("from_file(filename")
    assert from_file.summary
    assert from_file.source == f"package:puremagic {package.version}"
    assert package.version and len(package.digest) == 64
    assert not any(name.split(".")[-1].startswith("_") for name in entries)
    assert "puremagic" not in sys.modules  # located and parsed, never imported


def test_digest_is_stable_and_packages_are_cached(tmp_path: Path) -> None:
    root = _workspace(tmp_path, "import puremagic\n")
    extractor = PackageExtractor()
    first = extractor.catalog(root, None)
    second = extractor.catalog(root, None)
    assert first[0].digest == second[0].digest
    assert second[0] is first[0]


def test_broken_package_is_skipped_with_a_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site = tmp_path / "site"
    (site / "brokenpkg").mkdir(parents=True)
    (site / "brokenpkg" / "__init__.py").write_text("def oops(:\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    root = tmp_path / "ws"
    root.mkdir()
    _workspace(root, "import brokenpkg\nimport puremagic\n")
    with caplog.at_level(logging.WARNING, logger=api_extraction.__name__):
        packages = PackageExtractor().catalog(root, None)
    assert [p.name for p in packages] == ["puremagic"]
    assert "brokenpkg" in caplog.text


def test_missing_interpreter_gives_no_packages_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _workspace(tmp_path, "import puremagic\n")
    with caplog.at_level(logging.WARNING, logger=api_extraction.__name__):
        assert PackageExtractor().catalog(root, str(tmp_path / "no-python")) == []
    assert "cannot run" in caplog.text


def test_locate_ignores_unknown_and_stdlib_modules() -> None:
    located = locate(["json", "surely_not_installed_zz", "puremagic"], None)
    assert [p.name for p in located] == ["puremagic"]


def test_definitions_signatures_and_all() -> None:
    source = (
        '"""Tools."""\n__all__ = ["slugify", "Store"]\nLIMIT = 3\n'
        "def slugify(text: str, *, sep: str = '-') -> str:\n    '''Make a slug.\n\n    More.'''\n"
        "def hidden():\n    pass\n"
        "class Store:\n    def __init__(self, path, mode='r'):\n        pass\n"
        "    def get(self, key, default=None):\n        '''Read a key.'''\n"
    )
    found = {d.qualified_name: d for d in python_api.definitions("pkg.tools", source)}
    assert found["pkg.tools"].summary == "Tools."
    assert found["pkg.tools.slugify"].signature == "slugify(text: str, *, sep: str = '-') -> str"
    assert found["pkg.tools.slugify"].summary == "Make a slug."
    assert found["pkg.tools.Store"].signature == "Store(path, mode='r')"
    assert found["pkg.tools.Store.get"].signature == "get(key, default=None)"
    assert "pkg.tools.hidden" not in found  # not in __all__
    assert "pkg.tools.LIMIT" not in found


def test_import_aliases_tolerate_broken_source() -> None:
    source = "import numpy as np\nfrom os.path import join as j\nimport xml.etree\ndef f(:\n"
    assert python_api.import_aliases(source) == {"np": "numpy", "j": "os.path.join", "xml": "xml"}


def test_imports_of_a_file_being_typed_are_found(tmp_path: Path) -> None:
    # The file the user is typing rarely parses; its imports still name the packages it uses.
    typing = (
        "import puremagic\nfrom docstring_parser import (\n    parse,\n)\n\n"
        "def f(data):\n    return puremagic."
    )
    assert python_api.imported_modules(typing) == {"puremagic", "docstring_parser"}
    root = _workspace(tmp_path, typing)
    packages = asyncio.run(package_catalog(root, None))
    assert sorted(p.name for p in packages) == ["docstring_parser", "puremagic"]
