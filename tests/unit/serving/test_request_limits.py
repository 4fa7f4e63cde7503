"""Every request field of every RPC has a size limit, checked at the edge with a clear
INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import grpc
import pytest

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from serving.config import (
    ApiSearchConfig,
    CompletionConfig,
    EngineConfig,
    RepairConfig,
    RequestLimitsConfig,
    ServingConfig,
)
from serving.errors import InvalidRequestError
from serving.request_limits import RequestLimits
from tests.conftest import in_process_serving
from tests.support.fakes import ScriptedEngine

# Every limit 4 (characters, entries or value): "abcd" and 4 of anything fit, one more does not.
FITS, OVER = "abcd", "abcde"
TINY = ServingConfig(
    engine=EngineConfig(model="m"),
    completion=CompletionConfig(
        max_context_chars=4,
        max_tokens_limit=4,
        max_context_snippets=4,
        max_snippet_chars=4,
        max_snippets_chars=12,
    ),
    repair=RepairConfig(max_file_chars=4, max_budget=4, max_tokens_limit=4),
    api_search=ApiSearchConfig(max_query_chars=4, max_limit=4),
    request_limits=RequestLimitsConfig(
        **{f.name: 4 for f in dataclasses.fields(RequestLimitsConfig)}
    ),
)


def _file(path: str = FITS, sha256: str = FITS) -> pb.WorkspaceFile:
    return pb.WorkspaceFile(path=path, sha256=sha256)


def _digest(path: str = FITS, sha256: str = FITS) -> pb.FileDigest:
    return pb.FileDigest(path=path, sha256=sha256)


def _package(**fields: object) -> pb.ApiPackage:
    entry = {name: FITS for name in ("qualified_name", "kind", "signature", "summary", "source")}
    package: dict[str, object] = {
        "name": FITS,
        "version": FITS,
        "digest": FITS,
        "entries": [pb.ApiEntry(**entry, path=FITS)] * 4,
    }
    package.update(fields)
    return pb.ApiPackage(**package)  # type: ignore[arg-type]


def _complete(**fields: object) -> pb.CompleteRequest:
    base: dict[str, object] = {
        "workspace_id": FITS,
        "file_path": FITS,
        "language": FITS,
        "prefix": "ab",
        "suffix": "cd",
        "limits": pb.CompletionLimits(max_tokens=4),
        "context": pb.ContextOptions(snippets=[_snippet("abc")] * 4),
    }
    return pb.CompleteRequest(**{**base, **fields})  # type: ignore[arg-type]


def _snippet(text: str = FITS, path: str = FITS) -> pb.ContextSnippet:
    return pb.ContextSnippet(kind="open_document", path=path, start_line=1, end_line=1, text=text)


def _snippets(*snippets: pb.ContextSnippet) -> pb.ContextOptions:
    return pb.ContextOptions(snippets=snippets)


def _sync(**fields: object) -> pb.SyncWorkspaceRequest:
    base: dict[str, object] = {
        "workspace_id": FITS,
        "files": [_file()] * 4,
        "manifest": [_digest()] * 4,
        "deleted_paths": [FITS] * 4,
        "package_manifest": [_digest()] * 4,
        "packages": [_package()] * 4,
    }
    return pb.SyncWorkspaceRequest(**{**base, **fields})  # type: ignore[arg-type]


def _search(**fields: object) -> pb.SearchApiRequest:
    return pb.SearchApiRequest(**{"workspace_id": FITS, "query": FITS, "limit": 4, **fields})  # type: ignore[arg-type]


def _repair(**fields: object) -> pb.RepairStart:
    base: dict[str, object] = {
        "workspace_id": FITS,
        "file_path": FITS,
        "language": FITS,
        "text": FITS,
        "failing_test_output": FITS,
        "budget": 4,
        "max_tokens": 4,
    }
    return pb.RepairStart(**{**base, **fields})  # type: ignore[arg-type]


def _events(**fields: object) -> pb.ReportEventsRequest:
    base: dict[str, object] = {
        "events": [pb.SuggestionEvent(suggestion_id="x")] * 4,
        "typed_chars": {name: 1 for name in "abcd"},
    }
    return pb.ReportEventsRequest(**{**base, **fields})  # type: ignore[arg-type]


BUILDERS: list[Callable[..., object]] = [_complete, _sync, _search, _repair, _events]

OVER_THE_LIMIT = [
    (_complete(workspace_id=OVER), "workspace_id has 5 characters; the limit is 4"),
    (_complete(file_path=OVER), "file_path has 5"),
    (_complete(language=OVER), "language has 5"),
    (_complete(prefix="abc", suffix="de"), "prefix and suffix have 5 characters together"),
    (
        _complete(limits=pb.CompletionLimits(max_tokens=5)),
        "limits.max_tokens 5 exceeds the limit 4",
    ),
    (_complete(context=_snippets(*[_snippet("a")] * 5)), "context.snippets has 5 entries"),
    (_complete(context=_snippets(_snippet(OVER))), "context.snippets[].text has 5"),
    (_complete(context=_snippets(_snippet(path=OVER))), "context.snippets[].path has 5"),
    (
        _complete(context=_snippets(*[_snippet()] * 4)),
        "context.snippets[].text together 16 exceeds the limit 12",
    ),
    (_sync(workspace_id=OVER), "workspace_id has 5"),
    (_sync(files=[_file()] * 5), "files has 5 entries; the limit is 4"),
    (_sync(files=[_file(path=OVER)]), "files[].path has 5"),
    (_sync(files=[_file(sha256=OVER)]), "files[].sha256 has 5"),
    (_sync(manifest=[_digest()] * 5), "manifest has 5 entries"),
    (_sync(manifest=[_digest(path=OVER)]), "manifest[].path has 5"),
    (_sync(manifest=[_digest(sha256=OVER)]), "manifest[].sha256 has 5"),
    (_sync(deleted_paths=[FITS] * 5), "deleted_paths has 5 entries"),
    (_sync(deleted_paths=[OVER]), "deleted_paths[].path has 5"),
    (_sync(package_manifest=[_digest()] * 5), "package_manifest has 5 entries"),
    (_sync(package_manifest=[_digest(path=OVER)]), "package_manifest[].path has 5"),
    (_sync(packages=[_package()] * 5), "packages has 5 entries"),
    (_sync(packages=[_package(name=OVER)]), "packages[].name has 5"),
    (_sync(packages=[_package(version=OVER)]), "packages[].version has 5"),
    (_sync(packages=[_package(digest=OVER)]), "packages[].digest has 5"),
    (_sync(packages=[_package(entries=[pb.ApiEntry()] * 5)]), "packages[].entries has 5"),
    (
        _sync(packages=[_package(entries=[pb.ApiEntry(signature=OVER)])]),
        "packages[].entries[].signature has 5",
    ),
    (_search(workspace_id=OVER), "workspace_id has 5"),
    (_search(query=OVER), "query has 5 characters; the limit is 4"),
    (_search(limit=5), "limit 5 exceeds the limit 4"),
    (_search(limit=2**32 - 1), "limit 4294967295 exceeds"),
    (_repair(workspace_id=OVER), "workspace_id has 5"),
    (_repair(file_path=OVER), "file_path has 5"),
    (_repair(language=OVER), "language has 5"),
    (_repair(text=OVER), "text has 5"),
    (_repair(failing_test_output=OVER), "failing_test_output has 5"),
    (_repair(budget=5), "budget 5 exceeds the limit 4"),
    (_repair(max_tokens=5), "max_tokens 5 exceeds the limit 4"),
    (_events(events=[pb.SuggestionEvent()] * 5), "events has 5 entries"),
    (_events(typed_chars={name: 1 for name in "abcde"}), "typed_chars has 5 entries"),
]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_a_request_at_every_limit_passes(build: Callable[..., object]) -> None:
    RequestLimits(TINY).check(build())


@pytest.mark.parametrize(("request_", "message"), OVER_THE_LIMIT, ids=lambda v: str(v)[:40])
def test_one_field_over_its_limit_is_refused_by_name(request_: object, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        RequestLimits(TINY).check(request_)
    assert message in str(caught.value)


def test_the_defaults_let_what_the_language_server_sends_through() -> None:
    limits = RequestLimits(ServingConfig(engine=EngineConfig(model="m")))
    limits.check(pb.SyncWorkspaceRequest(workspace_id="a" * 16, files=[_file()] * 64))
    limits.check(pb.ReportEventsRequest(events=[pb.SuggestionEvent()] * 10_000))
    with pytest.raises(InvalidRequestError, match="workspace_id"):
        limits.check(pb.SearchApiRequest(workspace_id="w" * 513, query="json"))


async def test_every_rpc_answers_invalid_argument_naming_the_field() -> None:
    async with (
        in_process_serving(ScriptedEngine()) as address,
        open_channel(address) as channel,
    ):
        stub = quill_pb2_grpc.QuillStub(channel)
        long_id = "w" * 513
        calls = {
            "workspace_id": stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id=long_id)),
            "limit": stub.SearchApi(pb.SearchApiRequest(query="json", limit=101)),
            "events": stub.ReportEvents(
                pb.ReportEventsRequest(events=[pb.SuggestionEvent()] * 10_001)
            ),
        }
        for field, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in (caught.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Complete(pb.CompleteRequest(language="x" * 65, prefix="a")):
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "language" in (caught.value.details() or "")
        start = pb.RepairStart(text="x = 1\n", failing_test_output="t" * 100_001)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Repair(iter([pb.RepairClientMessage(start=start)])):
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "failing_test_output" in (caught.value.details() or "")
