"""Workspace sync from the real language server to the real serving layer (scripted engine,
real embedding model and FAISS): the initial sync with $/progress, only changed files travel,
saved edits re-index, and completion prompts carry another file's definition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.channel import open_channel
from quill.digest import content_digest
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.launcher import free_port
from tests.conftest import in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine, scripted_repair_serving
from tests.support.lsp import complete_at_end, open_document
from tests.support.retrieval_workspace import BILLING, initialize_in, workspace_id, write_workspace

MAIN = "from shop.billing import compute_invoice_total\n\ntotal = compute_invoice_total("


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _status(address: str, root: Path) -> pb.IndexStatus:
    async with open_channel(address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        answer = await stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id=workspace_id(root)))
    return answer.status


async def _until_indexed(address: str, root: Path, files: int) -> pb.IndexStatus:
    for _ in range(600):
        status = await _status(address, root)
        if status.files_indexed == files and status.files_pending == 0:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"not indexed: {status}")


async def _complete_with_context(
    address: str, root: Path, engine: ScriptedEngine
) -> tuple[pb.CompletionDone, str]:
    """Complete at the end of main.py until retrieval answers within its deadline (the query
    model may still be loading); returns the final message and the prompt the engine got."""
    request = pb.CompleteRequest(
        workspace_id=workspace_id(root),
        file_path="main.py",
        language="python",
        prefix=MAIN,
        cursor=pb.Position(line=2, character=len(MAIN.split("\n")[-1])),
        context=pb.ContextOptions(disable_api_search=True),
    )
    async with open_channel(address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        for _ in range(100):
            responses = [r async for r in stub.Complete(request)]
            done = responses[-1].done
            if done.context_sources:
                break
            await asyncio.sleep(0.2)
    return done, engine.decode(engine.requests[-1].prompt_token_ids)


def _progress_values(client: LanguageClient) -> list[object]:
    return [value for reports in client.progress_reports.values() for value in reports]


async def _until_progress_ends(client: LanguageClient) -> list[object]:
    for _ in range(600):
        values = _progress_values(client)
        if any(isinstance(v, types.WorkDoneProgressEnd) for v in values):
            return values
        await asyncio.sleep(0.05)
    raise AssertionError(f"no progress end: {_progress_values(client)}")


async def test_sync_progress_and_retrieved_context_in_the_prompt(
    client: LanguageClient, tmp_path: Path
) -> None:
    write_workspace(tmp_path, MAIN)
    engine = ScriptedEngine(chunks=["cart.items, 0.2)"], max_model_len=4096)
    async with in_process_serving(engine) as address:
        await initialize_in(client, tmp_path, address)
        values = await _until_progress_ends(client)
        assert isinstance(values[0], types.WorkDoneProgressBegin)
        reports = [v.message for v in values if isinstance(v, types.WorkDoneProgressReport)]
        assert reports[0] == "3 files found"  # .gitignore'd and binary files are not synced
        assert reports[-1] == "3/3 files sent"
        status = await _until_indexed(address, tmp_path, 3)
        assert status.chunks == 3

        done, prompt = await _complete_with_context(address, tmp_path, engine)
        assert [(s.kind, s.path, s.start_line, s.end_line) for s in done.context_sources][0] == (
            "retrieval",
            "shop/billing.py",
            1,
            3,
        )
        assert prompt.startswith("# file: ")
        assert "# file: shop/billing.py\ndef compute_invoice_total(items, tax_rate):" in prompt
        assert prompt.endswith("# file: main.py\n" + MAIN)
        # main.py itself is in the prompt already, never as retrieved context.
        assert all(s.path != "main.py" for s in done.context_sources)

        # A saved edit travels alone and replaces the old chunks.
        renamed = BILLING.replace("compute_invoice_total", "invoice_sum")
        billing_uri = (tmp_path / "shop" / "billing.py").as_uri()
        open_document(client, billing_uri, renamed)
        client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(billing_uri))
        )
        for _ in range(300):
            done, prompt = await _complete_with_context(address, tmp_path, engine)
            if "def invoice_sum" in prompt:
                break
            await asyncio.sleep(0.1)
        assert "def invoice_sum(items, tax_rate)" in prompt
        assert "def compute_invoice_total(items" not in prompt


async def test_retrieval_off_sends_nothing_and_prompts_stay_plain(
    client: LanguageClient, tmp_path: Path
) -> None:
    write_workspace(tmp_path, MAIN)
    engine = ScriptedEngine(chunks=["x)"], max_model_len=4096)
    async with in_process_serving(engine) as address:
        await initialize_in(client, tmp_path, address, retrieval=False)
        uri = (tmp_path / "main.py").as_uri()
        open_document(client, uri, MAIN)
        await complete_at_end(client, uri, MAIN)
        assert engine.decode(engine.requests[-1].prompt_token_ids) == MAIN
        status = await _status(address, tmp_path)
        assert status.files_indexed == 0 and status.files_pending == 0
        assert _progress_values(client) == []


@pytest.mark.parametrize("budget", [1, 300])
async def test_a_small_budget_limits_the_context(
    client: LanguageClient, tmp_path: Path, budget: int
) -> None:
    write_workspace(tmp_path, MAIN)
    engine = ScriptedEngine(chunks=["x)"], max_model_len=4096)
    async with in_process_serving(engine) as address:
        await initialize_in(client, tmp_path, address)
        await _until_progress_ends(client)
        await _until_indexed(address, tmp_path, 3)
        await _complete_with_context(address, tmp_path, engine)  # the query model is loaded
        request = pb.CompleteRequest(
            workspace_id=workspace_id(tmp_path),
            file_path="main.py",
            language="python",
            prefix=MAIN,
            context=pb.ContextOptions(disable_api_search=True, retrieval_token_budget=budget),
        )
        async with open_channel(address) as channel:
            responses = [r async for r in quill_pb2_grpc.QuillStub(channel).Complete(request)]
        context = len(engine.requests[-1].prompt_token_ids) - len(engine.encode(MAIN))
        assert 0 <= context <= budget
        assert (context > 0) == (budget == 300)
        assert sum(s.tokens for s in responses[-1].done.context_sources) <= context


@dataclass
class _FlakySync(quill_pb2_grpc.QuillServicer):
    """SyncWorkspace that fails its first call after `before_failing` ran (UNAVAILABLE: serving
    went away), then answers that every file in a manifest is needed; it records what came."""

    before_failing: Callable[[], None] = lambda: None
    calls: int = 0
    manifests: list[list[str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    async def SyncWorkspace(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self.calls += 1
        if self.calls == 1:
            self.before_failing()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        if request.manifest_complete:
            self.manifests.append(sorted(entry.path for entry in request.manifest))
        self.files.update({f.path: f.content for f in request.files})
        return pb.SyncWorkspaceResponse(
            needed_paths=[entry.path for entry in request.manifest],
            status=pb.IndexStatus(files_indexed=len(self.files)),
        )


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def test_a_failed_sync_is_retried_from_the_first_scan_reading_only_what_is_needed(
    client: LanguageClient, tmp_path: Path
) -> None:
    write_workspace(tmp_path, MAIN)

    def change_the_workspace() -> None:  # while serving is away
        (tmp_path / "added.py").write_text("added = 1\n")
        (tmp_path / "geo.py").write_text("RADIUS = 2\n")

    servicer = _FlakySync(before_failing=change_the_workspace)
    async with scripted_repair_serving(servicer) as address:
        await initialize_in(client, tmp_path, address)
        await _until(lambda: len(servicer.files) == 3)
    # The workspace was walked once: the retry sent the first scan's manifest (no added.py),
    # and read again only the files serving asked for (geo.py as it is now).
    assert servicer.manifests == [["geo.py", "main.py", "shop/billing.py"]]
    assert servicer.files["geo.py"] == "RADIUS = 2\n"


@pytest.mark.parametrize(
    ("caps", "synced"),
    [({"maxSyncFiles": 2}, 2), ({"maxSyncBytes": len(BILLING) + 10}, 1)],
)
async def test_sync_stops_at_the_caps_and_says_so_once(
    client: LanguageClient, tmp_path: Path, caps: dict[str, int], synced: int
) -> None:
    write_workspace(tmp_path, MAIN)
    servicer = _FlakySync(calls=1)  # no failure
    async with scripted_repair_serving(servicer) as address:
        await initialize_in(client, tmp_path, address, **caps)
        await _until(lambda: len(servicer.manifests) == 1)
        await _until(lambda: len(servicer.files) == synced)
        # A new file saved later is past the cap too.
        extra = tmp_path / "later.py"
        later = "later = 1\n" * 100
        extra.write_text(later)
        open_document(client, extra.as_uri(), later)
        client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(
                extra.as_uri()))
        )  # fmt: skip
        await asyncio.sleep(0.5)
    assert len(servicer.manifests[0]) == synced and "later.py" not in servicer.files
    (name,) = caps
    told = [m.message for m in client.messages if name in m.message]
    assert len(told) == 1, told


async def test_another_serving_process_gets_the_workspace_again(
    client: LanguageClient, tmp_path: Path
) -> None:
    """Serving at the same address is replaced by a process with an empty data folder (what a
    failover behind a load balancer looks like to the language server): the next answer names
    another serving instance, and the workspace is synced to it without anyone asking."""
    write_workspace(tmp_path, MAIN)
    engine = ScriptedEngine(chunks=["cart.items, 0.2)"], max_model_len=4096)
    address = f"127.0.0.1:{free_port()}"
    uri = (tmp_path / "main.py").as_uri()
    async with in_process_serving(engine, address=address):
        await initialize_in(client, tmp_path, address)
        await _until_indexed(address, tmp_path, 3)
        open_document(client, uri, MAIN)
        assert (await complete_at_end(client, uri, MAIN)).items
    async with in_process_serving(engine, address=address):
        assert (await _status(address, tmp_path)).files_indexed == 0  # a fresh process
        for _ in range(200):  # the language server probes until serving is back
            result = await complete_at_end(client, uri, MAIN)
            if result.items:
                break
            await asyncio.sleep(0.1)
        assert result.items
        status = await _until_indexed(address, tmp_path, 3)
        assert status.chunks == 3


async def test_a_returning_serving_process_gets_what_changed_while_it_was_away(
    client: LanguageClient, tmp_path: Path
) -> None:
    """Serving restarts on its own data (a replica coming back): it still holds the workspace as
    it was, so the language server must walk the workspace again, not replay its first walk,
    for a file changed meanwhile to reach it."""
    root = tmp_path / "root"
    root.mkdir()
    write_workspace(root, MAIN)
    engine = ScriptedEngine(chunks=["cart.items, 0.2)"], max_model_len=4096)
    address = f"127.0.0.1:{free_port()}"
    data = tmp_path / "data"
    uri = (root / "main.py").as_uri()
    async with in_process_serving(engine, address=address, data_dir=data):
        await initialize_in(client, root, address)
        await _until_indexed(address, root, 3)
    geo = "RADIUS_KM = 6371\n"
    (root / "geo.py").write_text(geo)  # while serving is away (a checkout, say)
    manifest = [pb.FileDigest(path="geo.py", sha256=content_digest(geo))]
    async with in_process_serving(engine, address=address, data_dir=data):
        open_document(client, uri, MAIN)
        for _ in range(100):  # the language server probes until serving is back, then syncs
            await complete_at_end(client, uri, MAIN)
            async with open_channel(address) as channel:
                answer = await quill_pb2_grpc.QuillStub(channel).SyncWorkspace(
                    pb.SyncWorkspaceRequest(workspace_id=workspace_id(root), manifest=manifest)
                )
            if not answer.needed_paths:
                break
            await asyncio.sleep(0.1)
        assert list(answer.needed_paths) == []
