"""A workspace's third-party API packages on disk: one file per package, so a sync that changes
one package writes that one (it used to rewrite them all into one `packages.bin`), and memory
holds only what identifies each package (name, version, digest, entry count), not its entries.

`packages/<sha256 of the name>.pb`: the ApiPackage message, written atomically.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

# The single-file store of earlier versions, migrated on first load.
_LEGACY_FILE = "packages.bin"


@dataclass(frozen=True)
class PackageInfo:
    """What a workspace keeps in memory of one package."""

    version: str
    digest: str
    entries: int
    size: int  # bytes of the serialized message


def info_of(package: pb.ApiPackage) -> PackageInfo:
    return PackageInfo(package.version, package.digest, len(package.entries), package.ByteSize())


class PackageStore:
    def __init__(self, workspace_dir: Path) -> None:
        self._workspace_dir = workspace_dir
        self._dir = workspace_dir / "packages"

    def _path(self, name: str) -> Path:
        return self._dir / (hashlib.sha256(name.encode("utf-8")).hexdigest()[:32] + ".pb")

    def write(self, packages: Iterable[pb.ApiPackage]) -> None:
        from retrieval.persistence import atomic_write

        for package in packages:
            atomic_write(self._path(package.name), package.SerializeToString())

    def delete(self, names: Iterable[str]) -> None:
        for name in names:
            self._path(name).unlink(missing_ok=True)

    def read(self, name: str) -> pb.ApiPackage | None:
        try:
            return pb.ApiPackage.FromString(self._path(name).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:  # protobuf's DecodeError is a ValueError
            logger.warning("ignoring damaged API package file %s: %s", self._path(name), error)
            return None

    def load(self) -> dict[str, PackageInfo]:
        """What every stored package is (reading each once); migrates the old single file."""
        self._migrate()
        found: dict[str, PackageInfo] = {}
        if not self._dir.is_dir():
            return found
        for path in sorted(self._dir.glob("*.pb")):
            try:
                package = pb.ApiPackage.FromString(path.read_bytes())
            except (OSError, ValueError) as error:
                logger.warning("ignoring damaged API package file %s: %s", path, error)
                continue
            found[package.name] = info_of(package)
        return found

    def _migrate(self) -> None:
        legacy = self._workspace_dir / _LEGACY_FILE
        if not legacy.exists():
            return
        try:
            data = legacy.read_bytes()
            offset = 0
            packages = []
            while offset < len(data):
                (length,) = struct.unpack_from("<I", data, offset)
                packages.append(pb.ApiPackage.FromString(data[offset + 4 : offset + 4 + length]))
                offset += 4 + length
            self.write(packages)
        except (OSError, ValueError, struct.error) as error:
            logger.warning("ignoring damaged package store %s: %s", legacy, error)
        legacy.unlink(missing_ok=True)
