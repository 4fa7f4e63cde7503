"""Two tenants on one serving, each through the real language server (real embedding model and
FAISS, scripted engine): Bob, even knowing Alice's workspace id, cannot find her definitions
with SearchApi, get her code into his prompts, change or wipe her workspace, or count events
for her suggestions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest_lsp
from prometheus_client import REGISTRY
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.channel import ClientSecurity, open_channel
from quill.tokens import hash_token, new_token
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from serving.config import SecurityConfig
from tests.conftest import in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete_at_end, execute, open_document
from tests.support.retrieval_workspace import initialize_in, workspace_id

BILLING = '''def charge_customer(customer_id, cents):
    """Charge a customer's card through Stripe."""
    return stripe.Charge.create(customer=customer_id, amount=cents)
'''
CONFIG = 'STRIPE_API_KEY = "sk_live_alice_0123456789"\n'
PREFIX = "from config import STRIPE_API_KEY\n\nSTRIPE_API_KEY = "


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def alice(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def bob(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


class Tenant:
    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.token = new_token()
        self.token_file = folder / f"{name}-token"
        self.token_file.write_text(self.token, encoding="utf-8")
        self.root = folder / name
        self.root.mkdir()

    def channel(self, address: str) -> grpc.aio.Channel:
        return open_channel(address, ClientSecurity(token=self.token))

    async def status(self, address: str, wid: str) -> pb.IndexStatus:
        async with self.channel(address) as channel:
            answer = await quill_pb2_grpc.QuillStub(channel).SyncWorkspace(
                pb.SyncWorkspaceRequest(workspace_id=wid)
            )
        return answer.status

    async def until_indexed(self, address: str, files: int) -> None:
        for _ in range(600):
            status = await self.status(address, workspace_id(self.root))
            if status.files_indexed == files and status.files_pending == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name}'s workspace not indexed: {status}")

    async def complete(
        self, address: str, wid: str, engine: ScriptedEngine
    ) -> tuple[pb.CompletionDone, str]:
        """Complete `PREFIX` in main.py of workspace `wid`; the final message and the prompt."""
        request = pb.CompleteRequest(
            workspace_id=wid,
            file_path="main.py",
            language="python",
            prefix=PREFIX,
            cursor=pb.Position(line=2, character=len("STRIPE_API_KEY = ")),
            context=pb.ContextOptions(disable_api_search=True),
        )
        async with self.channel(address) as channel:
            responses = [r async for r in quill_pb2_grpc.QuillStub(channel).Complete(request)]
        return responses[-1].done, engine.decode(engine.requests[-1].prompt_token_ids)


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("quill_events_rejected_total", {"reason": reason}) or 0.0


async def test_one_tenant_never_reaches_another_tenants_workspace(
    alice: LanguageClient, bob: LanguageClient, tmp_path: Path
) -> None:
    a, b = Tenant("alice", tmp_path), Tenant("bob", tmp_path)
    (a.root / "billing.py").write_text(BILLING)
    (a.root / "config.py").write_text(CONFIG)
    (a.root / "main.py").write_text(PREFIX)
    (b.root / "main.py").write_text(PREFIX)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {hash_token(a.token)}\nbob {hash_token(b.token)}\n")
    engine = ScriptedEngine(chunks=["0"], max_model_len=4096)
    alice_id = workspace_id(a.root)
    async with in_process_serving(engine, security=SecurityConfig(token_file=tokens)) as address:
        await initialize_in(alice, a.root, address, servingTokenFile=str(a.token_file))
        await initialize_in(bob, b.root, address, servingTokenFile=str(b.token_file))
        await a.until_indexed(address, 3)
        await b.until_indexed(address, 1)
        # Alice's own completion carries her config (retrieval works; the query model loads
        # on first use, so ask until it answers in time).
        for _ in range(100):
            done, prompt = await a.complete(address, alice_id, engine)
            if done.context_sources:
                break
            await asyncio.sleep(0.2)
        assert "config.py" in [s.path for s in done.context_sources]
        assert "sk_live_alice" in prompt
        alice_suggestion = done.suggestion_id

        # Bob, through his language server: her definitions and code are nowhere.
        found = await execute(bob, "quill.searchApi", {"query": "charge a customer", "limit": 20})
        assert found["items"], "the standard library still answers"
        assert not [i for i in found["items"] if i["source"] == "workspace"]
        uri = (b.root / "main.py").as_uri()
        open_document(bob, uri, PREFIX)
        await complete_at_end(bob, uri, PREFIX)
        assert "sk_live" not in engine.decode(engine.requests[-1].prompt_token_ids)

        # Bob with Alice's workspace id (guessed or leaked) reaches only his own, empty one.
        async with b.channel(address) as channel:
            stub = quill_pb2_grpc.QuillStub(channel)
            hits = await stub.SearchApi(pb.SearchApiRequest(workspace_id=alice_id, query="charge"))
            assert not [h for h in hits.hits if h.entry.source == "workspace"]
            done, prompt = await b.complete(address, alice_id, engine)
            assert list(done.context_sources) == [] and "sk_live" not in prompt
            # An injected file and a wipe land in Bob's workspace of that id, not Alice's.
            evil = "def charge_customer(customer_id, cents):\n    send_to_bob(customer_id)\n"
            await stub.SyncWorkspace(
                pb.SyncWorkspaceRequest(
                    workspace_id=alice_id, files=[pb.WorkspaceFile(path="evil.py", content=evil)]
                )
            )
            await stub.SyncWorkspace(
                pb.SyncWorkspaceRequest(workspace_id=alice_id, manifest_complete=True)
            )
            # Events for Alice's suggestion are not Bob's to report.
            before = _rejected("unknown_suggestion")
            answer = await stub.ReportEvents(
                pb.ReportEventsRequest(
                    events=[
                        pb.SuggestionEvent(
                            suggestion_id=alice_suggestion,
                            kind=pb.SUGGESTION_EVENT_KIND_ACCEPTED,
                        )
                    ]
                )
            )
            assert (answer.recorded, answer.rejected) == (0, 1)
            assert _rejected("unknown_suggestion") == before + 1

        # Alice's workspace is whole and clean.
        status = await a.status(address, alice_id)
        assert (status.files_indexed, status.files_pending) == (3, 0)
        done, prompt = await a.complete(address, alice_id, engine)
        assert "send_to_bob" not in prompt and "sk_live_alice" in prompt
        found = await execute(alice, "quill.searchApi", {"query": "charge a customer"})
        assert found["items"][0]["qualifiedName"] == "billing.charge_customer"
        assert found["items"][0]["path"] == "billing.py"
        # ...and her events still count.
        async with a.channel(address) as channel:
            answer = await quill_pb2_grpc.QuillStub(channel).ReportEvents(
                pb.ReportEventsRequest(
                    events=[
                        pb.SuggestionEvent(
                            suggestion_id=alice_suggestion, kind=pb.SUGGESTION_EVENT_KIND_SHOWN
                        )
                    ]
                )
            )
            assert answer.recorded == 1
