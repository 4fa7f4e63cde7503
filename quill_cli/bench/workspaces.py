"""`quill bench workspaces`: serving's memory and disk per workspace, with many of them.

A real `quill serve` (the engine is loaded but not what is measured; eager mode starts it fast)
with a token file of `--tenants` tenants. `--workspaces` workspaces, spread evenly over the
tenants, each become active the way an editor makes them: one SyncWorkspace with a small Python
file (indexed: chunked, embedded, in FAISS and BM25), then one SearchApi (its API catalog is
built). One workspace is made active first, so what every workspace shares (the embedding
models, the standard library's part of the API catalog) is in the baseline; the memory per
workspace is serving's resident set growth (its own process; the engine core runs in another)
divided by the number of workspaces; the disk per workspace is the data folder's size divided
likewise. Every SearchApi must find the workspace's own function first (so the catalogs are real
and separate).

Two runs: every workspace kept in memory (`--resident-workspaces` above the count: the cost of an
active workspace), then serving's default cap (the least recently used leave memory: what the
bound holds serving to), where the first workspaces are searched again at the end: they come
back from disk, and the time that takes is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from quill_cli.bench.report import machine_info, summarize_ms, write_json

_MODULE = '''"""Ledger helpers of team {index}."""


def reconcile_ledger_{index}(entries, opening_balance):
    """Balance after applying every entry of ledger {index}."""
    return opening_balance + sum(entry.amount for entry in entries)


def ledger_entry_label_{index}(entry):
    return f"{{entry.date}} {{entry.amount:.2f}}"
'''


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("workspaces", help="serving memory and disk per workspace")
    p.add_argument("--workspaces", type=int, default=1000)
    p.add_argument("--tenants", type=int, default=50, help="workspaces spread over these")
    p.add_argument("--concurrency", type=int, default=8, help="workspaces made active at once")
    p.add_argument("--revisit", type=int, default=20, help="early workspaces searched again")
    p.add_argument("--serve-arg", action="append", default=[], help="passed to quill serve")
    p.add_argument("--skip-bounded", action="store_true", help="only the all-resident run")
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quill import envs

    envs.force_offline()
    result = asyncio.run(_run(args))
    for name, figures in result["runs"].items():
        print(f"{name}: {figures}")
    if args.json:
        write_json(args.json, result)
    return 0


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from quill.tokens import hash_token, new_token
    from serving.config import LimitsConfig

    tokens = {f"tenant-{i:03d}": new_token() for i in range(args.tenants)}
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="quill-bench-workspaces-") as folder:
        token_file = Path(folder) / "tokens"
        token_file.write_text("".join(f"{t} {hash_token(k)}\n" for t, k in tokens.items()))
        caps = {"all_resident": args.workspaces + 1}
        if not args.skip_bounded:
            caps["default_cap"] = LimitsConfig().resident_workspaces
        for name, resident in caps.items():
            runs[name] = await _measure(args, tokens, token_file, Path(folder) / name, resident)
    return {
        "benchmark": "workspaces",
        "machine": machine_info(),
        "workspaces": args.workspaces,
        "tenants": args.tenants,
        "runs": runs,
    }


async def _measure(
    args: argparse.Namespace,
    tokens: dict[str, str],
    token_file: Path,
    data_dir: Path,
    resident: int,
) -> dict[str, Any]:
    import psutil

    from quill_cli.launcher import ServingProcess

    per_tenant = -(-args.workspaces // len(tokens))
    serving = ServingProcess(
        [
            "--token-file",
            str(token_file),
            "--data-dir",
            str(data_dir),
            "--resident-workspaces",
            str(resident),
            "--workspaces-per-tenant",
            str(max(per_tenant + 1, 32)),
            "--enforce-eager",
            *args.serve_arg,
        ]  # fmt: skip
    ).start()
    assert serving.process is not None
    process = psutil.Process(serving.process.pid)
    tenants = list(tokens)
    workspaces = [(tenants[i % len(tenants)], f"workspace-{i}") for i in range(args.workspaces)]
    try:
        clients = _Clients(serving.address, tokens)
        # The shared models and the standard library's catalog load with the first workspace.
        await clients.activate("tenant-000", "warm-up", 10**6)
        await asyncio.sleep(2)
        baseline = process.memory_info().rss
        started = time.perf_counter()
        queue = list(enumerate(workspaces))

        async def worker() -> None:
            while queue:
                index, (tenant, workspace_id) = queue.pop(0)
                await clients.activate(tenant, workspace_id, index)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        await asyncio.sleep(2)
        after = process.memory_info().rss
        revisits: list[float] = []
        for index in random.Random(0).sample(range(min(100, args.workspaces)), args.revisit):
            tenant, workspace_id = workspaces[index]
            revisits.append(await clients.search(tenant, workspace_id, index))
        await clients.close()
    finally:
        serving.stop()
    disk = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    return {
        "resident_workspaces_cap": resident,
        "rss_baseline_mb": round(baseline / 1e6, 1),
        "rss_after_mb": round(after / 1e6, 1),
        "memory_per_workspace_kb": round((after - baseline) / len(workspaces) / 1e3, 1),
        "disk_per_workspace_kb": round(disk / len(workspaces) / 1e3, 1),
        "activation_s_total": round(elapsed, 1),
        "revisit_search": summarize_ms(revisits),
    }


class _Clients:
    """One channel per tenant, authenticated with that tenant's token."""

    def __init__(self, address: str, tokens: dict[str, str]) -> None:
        from quill.channel import ClientSecurity, open_channel
        from quill.v1 import quill_pb2_grpc

        self._channels = {
            t: open_channel(address, ClientSecurity(token=k)) for t, k in tokens.items()
        }
        self._stubs = {t: quill_pb2_grpc.QuillStub(c) for t, c in self._channels.items()}

    async def activate(self, tenant: str, workspace_id: str, index: int) -> None:
        """Sync one file, wait until it is indexed, search the workspace's catalog."""
        from quill.v1 import quill_pb2 as pb

        stub = self._stubs[tenant]
        file = pb.WorkspaceFile(path=f"ledger_{index}.py", content=_MODULE.format(index=index))
        answer = await stub.SyncWorkspace(
            pb.SyncWorkspaceRequest(workspace_id=workspace_id, files=[file])
        )
        while answer.status.files_indexed < 1 or answer.status.files_pending:
            await asyncio.sleep(0.05)
            answer = await stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id=workspace_id))
        await self.search(tenant, workspace_id, index)

    async def search(self, tenant: str, workspace_id: str, index: int) -> float:
        """One SearchApi for the workspace's own function; its latency in seconds."""
        from quill.v1 import quill_pb2 as pb

        started = time.perf_counter()
        found = await self._stubs[tenant].SearchApi(
            pb.SearchApiRequest(workspace_id=workspace_id, query=f"reconcile_ledger_{index}")
        )
        elapsed = time.perf_counter() - started
        top = found.hits[0].entry.qualified_name if found.hits else ""
        if top != f"ledger_{index}.reconcile_ledger_{index}":
            raise RuntimeError(f"{workspace_id} of {tenant}: top hit {top!r}")
        return elapsed

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
