"""The automatic API mode through real vLLM: a completion after `billing.` picks a function the
workspace defines, and the final message says which search ran."""

from __future__ import annotations

import asyncio
import hashlib

import grpc

from quill.launcher import ServingProcess
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc

BILLING = '''"""Billing helpers."""


def compute_invoice_total(items, tax_rate=0.2):
    """Sum the item prices and add the tax."""
    return sum(items) * (1 + tax_rate)


def refund_order(order_id):
    """Refund a paid order."""
    return order_id
'''
PREFIX = (
    "from shop import billing\n\n\ndef checkout(items):\n"
    "    # the invoice total with tax\n    return billing."
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _complete(address: str) -> pb.CompletionDone:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        await stub.SyncWorkspace(
            pb.SyncWorkspaceRequest(
                workspace_id="e2e-api",
                manifest=[pb.FileDigest(path="shop/billing.py", sha256=_digest(BILLING))],
                manifest_complete=True,
                files=[
                    pb.WorkspaceFile(
                        path="shop/billing.py", sha256=_digest(BILLING), content=BILLING
                    )
                ],
            ),
            timeout=120,
        )
        # Wait until the catalog holds the workspace's definitions (built in the background).
        for _ in range(300):
            found = await stub.SearchApi(
                pb.SearchApiRequest(workspace_id="e2e-api", query="compute_invoice"), timeout=600
            )
            if any(h.entry.source == "workspace" for h in found.hits):
                break
            await asyncio.sleep(1)
        request = pb.CompleteRequest(
            workspace_id="e2e-api",
            file_path="shop/checkout.py",
            language="python",
            prefix=PREFIX,
            cursor=pb.Position(line=5, character=len("    return billing.")),
            mode=pb.COMPLETION_MODE_SINGLE_LINE,
            limits=pb.CompletionLimits(max_tokens=16),
        )
        async for response in stub.Complete(request, timeout=600):
            if response.HasField("done"):
                return response.done
    raise AssertionError("no final message")


def test_automatic_mode_uses_the_workspace_api(real_serving: ServingProcess) -> None:
    done = asyncio.run(_complete(real_serving.address))
    assert done.text.startswith(("compute_invoice_total", "refund_order")), done.text
    auto = [c for c in done.tool_calls if c.trigger == "auto"]
    assert auto and auto[0].outcome == "ok"
    assert "shop.billing.compute_invoice_total" in auto[0].results
