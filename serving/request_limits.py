"""Size limits on every request field of every RPC, checked at the edge before any work starts.

The servicer (serving/server.py) passes each request here first; a field over its limit is
refused with INVALID_ARGUMENT naming the field (InvalidRequestError, mapped by serving/errors.py).
The limits are config fields (serving/config.py: `RequestLimitsConfig` and each RPC's section),
so an operator can raise them with `quill serve` flags. What depends on more than
a size (a region inside its file, NUL bytes, a known mode) stays with the RPC's own service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sized
from typing import Any

from quill.v1 import quill_pb2 as pb
from serving.config import ServingConfig
from serving.errors import InvalidRequestError


def at_most(name: str, value: float, limit: float) -> None:
    if value > limit:
        raise InvalidRequestError(f"{name} {value} exceeds the limit {limit}")


def at_most_chars(name: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InvalidRequestError(f"{name} has {len(text)} characters; the limit is {limit}")


def at_most_items(name: str, items: Sized, limit: int) -> None:
    if len(items) > limit:
        raise InvalidRequestError(f"{name} has {len(items)} entries; the limit is {limit}")


class RequestLimits:
    """Checks each RPC's request against the configured limits (raises InvalidRequestError)."""

    def __init__(self, config: ServingConfig) -> None:
        self._config = config
        self._limits = config.request_limits
        self._checks: dict[type, Callable[[Any], None]] = {
            pb.CompleteRequest: self._complete,
            pb.SyncWorkspaceRequest: self._sync_workspace,
            pb.SearchApiRequest: self._search_api,
            pb.RepairStart: self._repair_start,
            pb.ReportEventsRequest: self._report_events,
        }

    def check(self, request: Any) -> None:
        """Refuse `request` if a field is over its limit."""
        self._checks[type(request)](request)

    async def checked_repair_stream(
        self, messages: AsyncIterator[pb.RepairClientMessage]
    ) -> AsyncIterator[pb.RepairClientMessage]:
        """The Repair stream, its RepairStart checked before the service sees it."""
        async for message in messages:
            if message.HasField("start"):
                self.check(message.start)
            yield message

    def _names(self, workspace_id: str, file_path: str = "", language: str = "") -> None:
        at_most_chars("workspace_id", workspace_id, self._limits.max_workspace_id_chars)
        at_most_chars("file_path", file_path, self._limits.max_path_chars)
        at_most_chars("language", language, self._limits.max_language_chars)

    def _complete(self, request: pb.CompleteRequest) -> None:
        config = self._config.completion
        self._names(request.workspace_id, request.file_path, request.language)
        size = len(request.prefix) + len(request.suffix)
        if size > config.max_context_chars:
            raise InvalidRequestError(
                f"prefix and suffix have {size} characters together; the limit is "
                f"{config.max_context_chars}"
            )
        at_most("limits.max_tokens", request.limits.max_tokens, config.max_tokens_limit)
        snippets = request.context.snippets
        at_most_items("context.snippets", snippets, config.max_context_snippets)
        for snippet in snippets:
            at_most_chars("context.snippets[].text", snippet.text, config.max_snippet_chars)
            at_most_chars("context.snippets[].path", snippet.path, self._limits.max_path_chars)
        at_most(
            "context.snippets[].text together",
            sum(len(snippet.text) for snippet in snippets),
            config.max_snippets_chars,
        )

    def _sync_workspace(self, request: pb.SyncWorkspaceRequest) -> None:
        limits = self._limits
        self._names(request.workspace_id)
        at_most_items("files", request.files, limits.max_sync_files)
        for name in ("manifest", "deleted_paths", "package_manifest"):
            at_most_items(name, getattr(request, name), limits.max_sync_manifest)
        at_most_items("packages", request.packages, limits.max_sync_packages)
        for field, entries in (
            ("files", request.files),
            ("manifest", request.manifest),
            ("package_manifest", request.package_manifest),
        ):
            self._paths_and_digests(field, entries)
        for path in request.deleted_paths:
            at_most_chars("deleted_paths[].path", path, limits.max_path_chars)
        for package in request.packages:
            self._package(package)

    def _paths_and_digests(self, field: str, entries: Iterable[Any]) -> None:
        # Inline first: a complete manifest has one entry per file of the workspace.
        max_path, max_digest = self._limits.max_path_chars, self._limits.max_digest_chars
        for entry in entries:
            if len(entry.path) > max_path or len(entry.sha256) > max_digest:
                at_most_chars(f"{field}[].path", entry.path, max_path)
                at_most_chars(f"{field}[].sha256", entry.sha256, max_digest)

    def _package(self, package: pb.ApiPackage) -> None:
        limits = self._limits
        at_most_chars("packages[].name", package.name, limits.max_path_chars)
        at_most_chars("packages[].version", package.version, limits.max_path_chars)
        at_most_chars("packages[].digest", package.digest, limits.max_digest_chars)
        at_most_items("packages[].entries", package.entries, limits.max_package_entries)
        for entry in package.entries:
            # No text of an entry is longer than the whole entry's encoding (computed in C).
            if entry.ByteSize() <= limits.max_api_text_chars:
                continue
            for name in ("qualified_name", "kind", "signature", "summary", "source", "path"):
                text = getattr(entry, name)
                at_most_chars(f"packages[].entries[].{name}", text, limits.max_api_text_chars)

    def _search_api(self, request: pb.SearchApiRequest) -> None:
        config = self._config.api_search
        self._names(request.workspace_id)
        at_most_chars("query", request.query, config.max_query_chars)
        at_most("limit", request.limit, config.max_limit)

    def _repair_start(self, start: pb.RepairStart) -> None:
        config = self._config.repair
        self._names(start.workspace_id, start.file_path, start.language)
        at_most_chars("text", start.text, config.max_file_chars)
        at_most_chars(
            "failing_test_output", start.failing_test_output, self._limits.max_repair_hint_chars
        )
        at_most("budget", start.budget, config.max_budget)
        at_most("max_tokens", start.max_tokens, config.max_tokens_limit)

    def _report_events(self, request: pb.ReportEventsRequest) -> None:
        at_most_items("events", request.events, self._limits.max_events)
        at_most_items("typed_chars", request.typed_chars, self._limits.max_typed_languages)
