"""The automatic API mode through real vLLM: a completion after `billing.` picks a function the
workspace defines, and the final message says which search ran."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from quill.channel import open_channel
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.launcher import ServingProcess

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
    async with open_channel(address) as channel:
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
        # And until the sync's other background work (retrieval indexing) has settled: a search
        # inside a completion gets 1 s before the completion goes on without it, by design.
        for _ in range(120):
            found = await stub.SearchApi(
                pb.SearchApiRequest(workspace_id="e2e-api", query="invoice total"), timeout=60
            )
            if found.latency_ms < 200:
                break
            await asyncio.sleep(0.5)
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


def _api_search(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quill", "api-search", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_api_search_command_line(real_serving: ServingProcess, tmp_path: Path) -> None:
    """`quill api-search` through a real `quill lsp`: the workspace's own definitions and the
    packages it imports (read from this environment) are found, with where they come from."""
    project = tmp_path / "project"
    (project / "shop").mkdir(parents=True)
    (project / "shop" / "billing.py").write_text(BILLING)
    (project / "app.py").write_text("import puremagic\n\ndef kind(path):\n    return puremagic.")
    out = tmp_path / "hits.json"
    address = ("--address", real_serving.address)

    found = _api_search("guess a file type from its name", "--workspace", str(project), *address)
    assert found.returncode == 0, found.stderr
    assert "puremagic.ext_from_filename(filename)" in found.stdout  # what gets inserted
    assert "package:puremagic" in found.stdout  # and where it comes from

    found = _api_search("invoice total", "--workspace", str(project), "--json", str(out), *address)
    assert found.returncode == 0, found.stderr
    first = json.loads(out.read_text())["items"][0]
    assert first["qualifiedName"] == "shop.billing.compute_invoice_total"
    assert (first["source"], first["path"], first["line"]) == ("workspace", "shop/billing.py", 4)
    assert first["snippet"] == "shop.billing.compute_invoice_total(${1:items})$0"

    empty = _api_search("   ", *address)
    assert empty.returncode == 1 and "empty" in empty.stderr
    missing = _api_search("json", "--workspace", str(tmp_path / "nowhere"), *address)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
