"""The standard library's part of every catalog: commonly used modules, read statically from
their source (quill.python_api) plus the builtins, embedded once and cached on disk."""

from __future__ import annotations

import builtins
import hashlib
import importlib.util
import inspect
import io
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from quill import python_api
from quill.v1 import quill_pb2 as pb
from retrieval.persistence import atomic_write
from serving.api_search.index import Encode, entry_text

logger = logging.getLogger(__name__)

# Modules code commonly calls into; the long tail of the stdlib would only dilute results.
STDLIB_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "collections", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "enum", "fnmatch", "fractions", "functools", "glob", "gzip", "hashlib", "heapq",
    "html", "http.client", "inspect", "io", "itertools", "json", "logging", "math",
    "operator", "os", "os.path", "pathlib", "pickle", "pprint", "random", "re", "secrets",
    "shlex", "shutil", "socket", "sqlite3", "statistics", "string", "struct", "subprocess",
    "sys", "tarfile", "tempfile", "textwrap", "threading", "time", "traceback", "typing",
    "unicodedata", "urllib.parse", "urllib.request", "uuid", "xml.etree.ElementTree", "zipfile",
)  # fmt: skip
MAX_ENTRIES_PER_MODULE = 400
_CACHE_VERSION = "1"


def _entry(name: str, kind: str, signature: str, summary: str) -> pb.ApiEntry:
    return pb.ApiEntry(
        qualified_name=name, kind=kind, signature=signature, summary=summary, source="stdlib"
    )


def _module_entries(name: str) -> list[pb.ApiEntry]:
    # Serving may import the standard library (never user or third-party code). Modules with
    # Python source are read statically like packages; compiled ones are introspected.
    module = importlib.import_module(name)
    origin = getattr(module, "__file__", None) or ""
    if not origin.endswith(".py"):
        return _introspected_entries(name, module)
    locations = [Path(p) for p in getattr(module, "__path__", ())]
    modules = python_api.package_modules(name, Path(origin), locations)
    found = python_api.package_definitions(modules, MAX_ENTRIES_PER_MODULE)
    entries = [_entry(d.qualified_name, d.kind, d.signature, d.summary) for d in found]
    # Names a module takes from C code (os.listdir comes from posix) have no Python source.
    known = {e.qualified_name for e in entries}
    extra = [e for e in _introspected_entries(name, module) if e.qualified_name not in known]
    return (entries + extra)[:MAX_ENTRIES_PER_MODULE]


def _doc(value: object) -> str:
    doc = getattr(value, "__doc__", None)
    return python_api.summary_of(doc) if isinstance(doc, str) else ""


def _introspected_entries(name: str, module: object) -> list[pb.ApiEntry]:
    entries = []
    if name != "builtins":
        entries.append(_entry(name, "module", name, _doc(module)))
    for attribute in sorted(dir(module)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated aliases warn when touched
            value = getattr(module, attribute, None)
        if not python_api.is_public(attribute) or value is None:
            continue
        qualified = f"{name}.{attribute}"
        if callable(value):
            try:
                signature = f"{attribute}{inspect.signature(value)}"
            except (TypeError, ValueError):
                signature = f"{attribute}(...)"
            kind = "class" if isinstance(value, type) else "function"
            entries.append(_entry(qualified, kind, signature, _doc(value)))
        elif isinstance(value, (int, float, str)):
            entries.append(_entry(qualified, "constant", attribute, ""))
    return entries[:MAX_ENTRIES_PER_MODULE]


def stdlib_entries(modules: tuple[str, ...] = STDLIB_MODULES) -> list[pb.ApiEntry]:
    entries = _introspected_entries("builtins", builtins)
    for name in modules:
        try:
            entries += _module_entries(name)
        except (ImportError, OSError, ValueError) as error:
            logger.warning("stdlib module %s skipped: %s", name, error)
    return entries


def load_stdlib(
    cache_dir: Path, encode: Encode, model_id: str, modules: tuple[str, ...] = STDLIB_MODULES
) -> tuple[list[pb.ApiEntry], np.ndarray]:
    """Stdlib entries and their embeddings, from the disk cache when it matches."""
    key = hashlib.sha256(
        "\0".join((_CACHE_VERSION, sys.version, model_id, *modules)).encode()
    ).hexdigest()[:16]
    entries_path = cache_dir / f"stdlib-{key}.json"
    vectors_path = cache_dir / f"stdlib-{key}.npy"
    if entries_path.exists() and vectors_path.exists():
        try:
            raw = json.loads(entries_path.read_text(encoding="utf-8"))
            vectors = np.load(vectors_path)
            entries = [pb.ApiEntry(**item) for item in raw]
            if len(entries) == len(vectors):
                return entries, vectors
        except (OSError, ValueError, TypeError) as error:
            logger.warning("stdlib API cache unreadable, rebuilding: %s", error)
    entries = stdlib_entries(modules)
    vectors = encode([entry_text(e) for e in entries])
    fields = ("qualified_name", "kind", "signature", "summary", "source")
    payload = [{f: getattr(e, f) for f in fields} for e in entries]
    # Atomic: several serving processes may share this cache and read it while it is written.
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    atomic_write(vectors_path, buffer.getvalue())
    atomic_write(entries_path, json.dumps(payload).encode("utf-8"))
    logger.info("stdlib API catalog: %d entries cached in %s", len(entries), cache_dir)
    return entries, vectors
