"""Retrieval end to end: the real language server syncs a workspace to the real serving process,
which indexes it with the real MiniLM model and FAISS; a completion through real vLLM then has a
definition from another file of the workspace in its prompt."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.launcher import ServingProcess
from tests.conftest import lsp_command
from tests.support.retrieval_workspace import initialize_in, workspace_id, write_workspace

pytestmark = pytest.mark.e2e

MAIN = "from shop.billing import compute_invoice_total\n\n\ndef checkout(cart):\n    total ="


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def test_completion_prompt_carries_a_definition_from_another_file(
    client: LanguageClient, real_serving: ServingProcess, tmp_path: Path
) -> None:
    write_workspace(tmp_path, MAIN)
    await initialize_in(client, tmp_path, real_serving.address)
    request = pb.CompleteRequest(
        workspace_id=workspace_id(tmp_path),
        file_path="main.py",
        language="python",
        prefix=MAIN,
        cursor=pb.Position(line=4, character=len("    total =")),
        mode=pb.COMPLETION_MODE_SINGLE_LINE,
        context=pb.ContextOptions(disable_api_search=True),
    )
    async with open_channel(real_serving.address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        for _ in range(600):  # the language server syncs in the background; serving indexes
            status = (
                await stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id=request.workspace_id))
            ).status
            if status.files_indexed == 3 and status.files_pending == 0:
                break
            await asyncio.sleep(0.2)
        # billing.py and geo.py: one definition each; main.py: its import lines and checkout().
        assert (status.files_indexed, status.chunks) == (3, 4)
        ends = [
            v for r in client.progress_reports.values() for v in r
            if isinstance(v, types.WorkDoneProgressEnd)
        ]  # fmt: skip
        assert ends, client.progress_reports

        for _ in range(30):  # the query model may still be loading on a busy machine
            with_context = [r async for r in stub.Complete(request, timeout=120)][-1].done
            if with_context.context_sources:
                break
            await asyncio.sleep(1)
        request.context.disable_retrieval = True
        plain = [r async for r in stub.Complete(request, timeout=120)][-1].done

    first = with_context.context_sources[0]
    assert (first.kind, first.path, first.start_line, first.end_line) == (
        "retrieval",
        "shop/billing.py",
        1,
        3,
    )
    assert all(s.path != "main.py" for s in with_context.context_sources)
    assert plain.context_sources == []
    # The chunks' tokens really went into the model's prompt.
    added = with_context.prompt_tokens - plain.prompt_tokens
    assert added >= sum(s.tokens for s in with_context.context_sources) - 8 > 0
