"""The caps of serving.config.LimitsConfig, checked before anything is taken in.

Every refusal is a RESOURCE_EXHAUSTED (serving/errors.py) whose message says what was asked,
what the cap is and which `quill serve` flag raises it; nothing of the refused request is kept,
and serving goes on serving everyone else.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping, Set

from quill.v1 import quill_pb2 as pb
from serving.config import LimitsConfig
from serving.config import limit_flag as flag
from serving.errors import ResourceExhaustedError


def _size(size: int) -> str:
    return f"{size:,} bytes" if size < 1_000_000 else f"{size / 1e6:,.1f} MB"


class StreamLimiter:
    """Counts each tenant's open streams (Complete, Repair) and refuses one over the cap."""

    def __init__(self, per_tenant: int) -> None:
        self._per_tenant = per_tenant
        self._open: Counter[str] = Counter()

    def open_streams(self, tenant: str) -> int:
        return self._open[tenant]

    @contextlib.contextmanager
    def admit(self, tenant: str, method: str) -> Iterator[None]:
        if self._open[tenant] >= self._per_tenant:
            raise ResourceExhaustedError(
                f"{method}: this tenant already has {self._open[tenant]} streams open; the limit "
                f"is {self._per_tenant} (quill serve {flag('streams_per_tenant')})"
            )
        self._open[tenant] += 1
        try:
            yield
        finally:
            self._open[tenant] -= 1
            if not self._open[tenant]:
                del self._open[tenant]


def check_sync(
    request: pb.SyncWorkspaceRequest,
    files: Mapping[str, int],
    packages: Set[str],
    limits: LimitsConfig,
    max_file_bytes: int,
) -> None:
    """Refuse `request` if the workspace would exceed a cap once it is applied.

    `files`: path -> bytes the workspace holds now; `packages`: the names of its packages.
    Files a manifest announces count already, so a workspace too large is refused at its first
    call, not after thousands of files; files the sync will reject on their own (too large)
    do not count.
    """
    _check_files(request, files, limits, max_file_bytes)
    _check_packages(request, packages, limits)


def _check_files(
    request: pb.SyncWorkspaceRequest,
    files: Mapping[str, int],
    limits: LimitsConfig,
    max_file_bytes: int,
) -> None:
    if not (request.files or request.manifest or request.deleted_paths):
        return
    sizes = dict(files)
    if request.manifest_complete:
        listed = {entry.path for entry in request.manifest} | {f.path for f in request.files}
        sizes = {path: size for path, size in sizes.items() if path in listed}
    for file in request.files:
        size = len(file.content.encode("utf-8", "surrogatepass"))
        if size <= max_file_bytes:
            sizes[file.path] = size
    for path in request.deleted_paths:
        sizes.pop(path, None)
    announced = {entry.path for entry in request.manifest} - sizes.keys()
    count = len(sizes) + len(announced)
    # Only growth past a cap is refused: a workspace over a cap lowered since can still shrink.
    if count > limits.files_per_workspace and count > len(files):
        raise ResourceExhaustedError(
            f"the workspace would hold {count:,} files; the limit is "
            f"{limits.files_per_workspace:,} per workspace "
            f"(quill serve {flag('files_per_workspace')})"
        )
    total = sum(sizes.values())
    if total > limits.bytes_per_workspace and total > sum(files.values()):
        raise ResourceExhaustedError(
            f"the workspace would hold {_size(total)} of files; the limit is "
            f"{_size(limits.bytes_per_workspace)} per workspace "
            f"(quill serve {flag('bytes_per_workspace')})"
        )


def _check_packages(
    request: pb.SyncWorkspaceRequest, packages: Set[str], limits: LimitsConfig
) -> None:
    cap = limits.packages_per_workspace
    for package in request.packages:
        size = package.ByteSize()
        if size > limits.bytes_per_package:
            raise ResourceExhaustedError(
                f"API package {package.name[:100]!r} is {_size(size)}; the limit is "
                f"{_size(limits.bytes_per_package)} per package "
                f"(quill serve {flag('bytes_per_package')})"
            )
    names = set(packages)
    if request.package_manifest and request.manifest_complete:
        names = {entry.path for entry in request.package_manifest}
    names |= {entry.path for entry in request.package_manifest}
    names |= {package.name for package in request.packages if package.name}
    if len(names) > cap and len(names) > len(packages):
        raise ResourceExhaustedError(
            f"the workspace would hold {len(names):,} API packages; the limit is {cap:,} per "
            f"workspace (quill serve {flag('packages_per_workspace')})"
        )
