"""API entries of the third-party packages a workspace imports, read from the user's environment.

Nothing is imported: a small stdlib-only script runs in the user's interpreter (the `python`
setting; by default the one running the language server) and only *locates* each imported
top-level module (`importlib.util.find_spec` on a top-level name does not execute it) and its
distribution version. The located source is then read statically with `ast`
(quill.python_api). Each package gets a digest of name, distribution and version, so serving
is sent a package only when it does not hold that digest yet, and unchanged packages are not
re-read. Workspace code is never executed; workspace-local modules are not packages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from quill import python_api
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Bump when extraction changes, so serving asks for packages again.
EXTRACTOR_VERSION = "1"
# Shallow names first (what users call); deep internals are cut. Each entry is embedded.
MAX_ENTRIES_PER_PACKAGE = 600
MAX_MODULES_PER_PACKAGE = 300
MAX_WORKSPACE_FILES = 3000
MAX_FILE_BYTES = 1_000_000
LOCATE_TIMEOUT_S = 30.0
_SKIPPED_DIR_NAMES = frozenset(
    {"node_modules", "__pycache__", "site-packages", "build", "dist", ".git", ".tox", ".venv"}
)

# Runs in the user's interpreter: stdlib only, prints one JSON object.
_LOCATE_SCRIPT = r"""
import importlib.metadata, importlib.util, json, sys
names = json.loads(sys.stdin.read())
try:
    owners = importlib.metadata.packages_distributions()
except Exception:
    owners = {}
found = {}
for name in names:
    stdlib = getattr(sys, "stdlib_module_names", ())
    info = {"stdlib": name in stdlib or name in sys.builtin_module_names}
    if not info["stdlib"]:
        try:
            spec = importlib.util.find_spec(name)
        except Exception as error:
            spec = None
            info["error"] = repr(error)
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            info["origin"] = spec.origin
            info["locations"] = list(spec.submodule_search_locations or [])
            dist = (owners.get(name) or [""])[0]
            info["distribution"] = dist
            try:
                info["version"] = importlib.metadata.version(dist) if dist else ""
            except Exception:
                info["version"] = ""
        elif spec is not None and spec.submodule_search_locations:
            info["origin"] = ""
            info["locations"] = list(spec.submodule_search_locations)
            info["distribution"] = ""
            info["version"] = ""
    found[name] = info
sys.stdout.write(json.dumps(found))
"""


class ExtractionError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocatedPackage:
    name: str
    origin: str
    locations: tuple[str, ...]
    distribution: str
    version: str

    @property
    def digest(self) -> str:
        key = "\0".join(
            (EXTRACTOR_VERSION, self.name, self.distribution, self.version, self.origin)
        )
        if not self.version:
            # Not an installed distribution (a path on sys.path): its files may change.
            key += "\0" + str(_mtime(self.origin or (self.locations or ("",))[0]))
        return hashlib.sha256(key.encode()).hexdigest()


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def python_files(root: Path, limit: int = MAX_WORKSPACE_FILES) -> Iterator[Path]:
    """The workspace's Python files, without virtualenvs, hidden folders and build output."""
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIPPED_DIR_NAMES
            and not (Path(folder) / d / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(folder) / name
                count += 1
                if count >= limit:
                    return


def workspace_imports(root: Path) -> tuple[set[str], set[str]]:
    """(top-level modules the workspace imports, modules the workspace defines itself)."""
    imported: set[str] = set()
    local: set[str] = set()
    for path in python_files(root):
        relative = path.relative_to(root)
        local.add(relative.parts[0].removesuffix(".py"))
        if relative.parts[0] == "src" and len(relative.parts) > 1:
            local.add(relative.parts[1].removesuffix(".py"))
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            source = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        imported |= python_api.imported_modules(source)
    return imported, local


def locate(names: list[str], python: str | None) -> list[LocatedPackage]:
    """Find the third-party packages among `names` in the interpreter `python`."""
    if not names:
        return []
    interpreter = python or sys.executable
    # A neutral working directory: the user's folder must not shadow installed packages.
    with tempfile.TemporaryDirectory() as neutral:
        try:
            result = subprocess.run(
                [interpreter, "-c", _LOCATE_SCRIPT],
                input=json.dumps(sorted(names)),
                capture_output=True,
                text=True,
                timeout=LOCATE_TIMEOUT_S,
                cwd=neutral,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ExtractionError(f"cannot run {interpreter}: {error}") from error
    if result.returncode != 0:
        raise ExtractionError(
            f"{interpreter} failed to locate packages: {result.stderr.strip()[-300:]}"
        )
    try:
        found = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise ExtractionError(f"{interpreter} printed no package list") from error
    packages = []
    for name, info in sorted(found.items()):
        if info.get("stdlib") or "locations" not in info:
            continue
        packages.append(
            LocatedPackage(
                name=name,
                origin=info.get("origin") or "",
                locations=tuple(info.get("locations") or ()),
                distribution=info.get("distribution") or "",
                version=info.get("version") or "",
            )
        )
    return packages


def extract_package(package: LocatedPackage, stop: threading.Event | None = None) -> pb.ApiPackage:
    """Read one located package statically into catalog entries (bounded); `stop` ends the
    reading between files (the language server is shutting down)."""
    modules = python_api.package_modules(
        package.name, Path(package.origin), [Path(p) for p in package.locations]
    )[:MAX_MODULES_PER_PACKAGE]
    if not modules:
        raise ExtractionError(f"{package.name}: no Python source found")
    found = python_api.package_definitions(
        _until(stop, modules), MAX_ENTRIES_PER_PACKAGE, MAX_FILE_BYTES
    )
    if stop is not None and stop.is_set():
        raise ExtractionError(f"{package.name}: stopped")
    if not found:
        raise ExtractionError(f"{package.name}: no definitions could be read")
    source = f"package:{package.distribution or package.name} {package.version}".rstrip()
    return pb.ApiPackage(
        name=package.name,
        version=package.version,
        digest=package.digest,
        entries=[
            pb.ApiEntry(
                qualified_name=d.qualified_name,
                kind=d.kind,
                signature=d.signature,
                summary=d.summary,
                source=source,
            )
            for d in found
        ],
    )


def _until(stop: threading.Event | None, items: list[_T]) -> Iterator[_T]:
    for item in items:
        if stop is not None and stop.is_set():
            return
        yield item


@dataclass
class PackageExtractor:
    """Extracts packages once per digest; failures are logged and skipped."""

    cache: dict[str, pb.ApiPackage] = field(default_factory=dict)

    def catalog(
        self, root: Path, python: str | None, stop: threading.Event | None = None
    ) -> list[pb.ApiPackage]:
        imported, local = workspace_imports(root)
        try:
            located = locate(sorted(imported - local), python)
        except ExtractionError as error:
            logger.warning("API extraction skipped: %s", error)
            return []
        packages = []
        for package in _until(stop, located):
            cached = self.cache.get(package.digest)
            if cached is None:
                try:
                    cached = extract_package(package, stop)
                except (ExtractionError, OSError, ValueError, RecursionError) as error:
                    if stop is not None and stop.is_set():
                        break  # shutting down: not a failure of the package
                    logger.warning("API extraction of package %s failed: %s", package.name, error)
                    continue
                self.cache[package.digest] = cached
            packages.append(cached)
        return packages


_EXTRACTOR = PackageExtractor()


async def package_catalog(
    root: Path, python: str | None, stop: threading.Event | None = None
) -> list[pb.ApiPackage]:
    """The API packages of everything `root` imports, read in `python`'s environment.

    The hook workspace sync calls; the work runs in a thread (it reads many files, seconds per
    large package), which ends early once `stop` is set: the process cannot exit before it.
    """
    return await asyncio.to_thread(_EXTRACTOR.catalog, root, python, stop)
