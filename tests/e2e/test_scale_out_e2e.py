"""Scale-out and faults end to end (issue #18): two real `quill serve` replicas (vLLM, eager, a
small KV cache) behind Debian's HAProxy on the config in ops/haproxy/ (tests/support/haproxy.py),
real language servers, real SIGKILLs, a real full disk.

- One workspace's calls land on one replica while both live (the replica named in every answer,
  and each replica's own request counter agree); its events go there too.
- SIGKILL of the workspace's replica while editors stream completions: the language server's next
  suggestions come from the other replica within seconds, the workspace is synced there by
  content hash without anyone asking, the load goes on, events the survivor acknowledged are all
  in its counters, and the killed replica leaves no engine process; when it comes back, the
  workspace's traffic returns to it, and it gets what changed meanwhile.
- HAProxy restarted: completions resume, queued events arrive, and the counts are exact.
- Serving's data folder full during an index save (a tiny tmpfs): the last index stays on disk
  whole, the error is clear (RESOURCE_EXHAUSTED, IndexStatus.storage_error) and counted, and the
  index is saved once there is room.
- Serving restarted while a language server holds a request in flight and unsent events: the
  request is answered, the events are delivered once serving is back.

The replicas and the balancer are shared by the whole module (each engine start costs about half
a minute); a test that stops a replica starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
import pytest_lsp
from prometheus_client.parser import text_string_to_metric_families
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.channel import open_blocking_channel, open_channel
from quill.digest import content_digest
from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.bench.grpc_editor import EditorSettings, GrpcEditor
from quill_cli.bench.typist import TypingPace, source_texts
from quill_cli.launcher import ServingProcess, free_port
from tests.conftest import lsp_command
from tests.e2e.conftest import serving_log_dir
from tests.support.haproxy import HaproxyProcess
from tests.support.lsp import complete_at_end, execute, open_document
from tests.support.retrieval_workspace import BILLING, initialize_in, workspace_id, write_workspace

pytestmark = pytest.mark.e2e

# Cheap replicas: eager (starts in seconds), a small KV cache, short prompts, quick shutdown.
REPLICA_ARGS = ["--enforce-eager", "--kv-cache-gib", "0.25", "--max-model-len", "4096",
                "--shutdown-grace", "3"]  # fmt: skip
TMPFS_BYTES = 64 * 2**20
MAIN = "from shop.billing import compute_invoice_total\n\n\ndef checkout(cart):\n    total ="
# Documents opened after a failover and after the return: fresh text, so the language server
# must ask serving (no type-ahead from an earlier suggestion).
NEXT = "from geo import Circle\n\n\ndef ring_area(outer, inner):\n    return"
BACK = "def tax(amount, rate):\n    return amount *"
# A call that cannot connect to its replica is redispatched at once, and HAProxy marks a replica
# down after 2 failed checks 1 s apart: a workspace's calls reach another replica within this.
REROUTE_S = 5.0
# A suggestion takes seconds on these shared CPU cores (more with the other replica's load).
FAILOVER_S = 30.0


@dataclass
class Replica:
    serving: ServingProcess
    data_dir: Path
    on_tmpfs: bool

    @property
    def address(self) -> str:
        return self.serving.address

    def instance(self) -> str:
        """The serving_instance of the process running now (an empty ReportEvents names it)."""
        with open_blocking_channel(self.address) as channel:
            stub = quill_pb2_grpc.QuillStub(channel)
            return stub.ReportEvents(pb.ReportEventsRequest(), timeout=30).serving_instance

    def engine_processes(self) -> list[psutil.Process]:
        assert self.serving.process is not None
        return psutil.Process(self.serving.process.pid).children(recursive=True)

    def counter(self, name: str, **labels: str) -> float:
        return metric(self.serving.metrics_url, name, **labels)


@dataclass
class Cluster:
    replicas: list[Replica]
    balancer: HaproxyProcess

    @property
    def address(self) -> str:
        return self.balancer.listen

    def replica_with(self, instance: str) -> Replica:
        (replica,) = [r for r in self.replicas if r.instance() == instance]
        return replica

    def other(self, replica: Replica) -> Replica:
        (other,) = [r for r in self.replicas if r is not replica]
        return other

    def restart(self, replica: Replica) -> None:
        replica.serving.stop()
        replica.serving.start(timeout_s=900)
        self.balancer.wait_until({r.address for r in self.replicas})


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0.0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def _mount_tmpfs(folder: Path) -> bool:
    folder.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(folder)],
        capture_output=True,
    )
    return result.returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("scale-out")
    replicas = []
    for number in (1, 2):
        data_dir = folder / f"data-{number}"
        on_tmpfs = _mount_tmpfs(data_dir)
        serving = ServingProcess(
            extra_args=[*REPLICA_ARGS, "--data-dir", str(data_dir)],
            log_path=serving_log_dir() / f"replica-{number}.log",
        )
        replicas.append(Replica(serving, data_dir, on_tmpfs))
    balancer = HaproxyProcess(
        f"127.0.0.1:{free_port()}", [r.address for r in replicas], serving_log_dir()
    )
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda r: r.serving.start(timeout_s=900), replicas))
        balancer.start().wait_until({r.address for r in replicas})
        yield Cluster(replicas, balancer)
    finally:
        balancer.stop()
        with contextlib.ExitStack() as unmount:
            for replica in replicas:
                if replica.on_tmpfs:
                    unmount.callback(subprocess.run, ["umount", str(replica.data_dir)])
            for replica in replicas:
                _stop_cleanly(replica)


def _stop_cleanly(replica: Replica) -> None:
    process = replica.serving.process
    if process is None or process.poll() is not None:
        return  # left killed by a failed test
    engines = replica.engine_processes()
    code = replica.serving.stop()
    assert code == 0, f"replica exited with {code}; see {replica.serving.log_path}"
    assert psutil.wait_procs(engines, timeout=60)[1] == []


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def _complete(address: str, wid: str, prefix: str = "def add(a, b):\n    return") -> str:
    """One short completion through `address` for workspace `wid`; the instance that answered."""
    async with open_channel(address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        request = pb.CompleteRequest(
            workspace_id=wid, file_path="a.py", language="python", prefix=prefix,
            limits=pb.CompletionLimits(max_tokens=4),
        )  # fmt: skip
        responses = [
            r async for r in stub.Complete(request, timeout=120, metadata=routing_metadata(wid))
        ]
    return responses[-1].done.serving_instance


async def _answering(address: str, wid: str) -> str:
    """The serving instance that answers the workspace's (engine-free) calls through `address`."""
    async with open_channel(address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        answer = await stub.ReportEvents(
            pb.ReportEventsRequest(), timeout=10, metadata=routing_metadata(wid)
        )
    return answer.serving_instance


async def _status(replica: Replica, wid: str) -> pb.IndexStatus:
    async with open_channel(replica.address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        request = pb.SyncWorkspaceRequest(workspace_id=wid)
        return (await stub.SyncWorkspace(request, timeout=60)).status


async def _until_indexed(replica: Replica, wid: str, files: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await _status(replica, wid)
        if status.files_indexed == files and status.files_pending == 0:
            return
        assert time.monotonic() < deadline, f"not indexed on {replica.address}: {status}"
        await asyncio.sleep(0.5)


async def _suggestion(
    client: LanguageClient, uri: str, text: str, timeout_s: float
) -> tuple[float, Any]:
    """Ask until a suggestion comes; the seconds it took and the item."""
    started = time.monotonic()
    while not (items := (await complete_at_end(client, uri, text)).items):
        assert time.monotonic() - started < timeout_s, "no suggestion"
        await asyncio.sleep(0.2)
    return time.monotonic() - started, items[0]


# ---- affinity ----


async def test_a_workspace_stays_on_one_replica_while_both_live(cluster: Cluster) -> None:
    workspaces = [f"affinity-{n}" for n in range(8)]
    before = [r.counter("quill_rpc_requests_total", method="Complete", code="OK")
              for r in cluster.replicas]  # fmt: skip
    answered: dict[str, set[str]] = {}
    for wid in workspaces:
        answered[wid] = {await _complete(cluster.address, wid) for _ in range(3)}
    assert all(len(instances) == 1 for instances in answered.values()), answered
    instances = [r.instance() for r in cluster.replicas]
    assert {i for s in answered.values() for i in s} == set(instances), "both replicas used"
    # Each replica's own request counter agrees with where the answers came from.
    for replica, instance, count in zip(cluster.replicas, instances, before, strict=True):
        served = 3 * sum(instance in s for s in answered.values())
        after = replica.counter("quill_rpc_requests_total", method="Complete", code="OK")
        assert after - count == served


# ---- the load balancer restarted ----


async def test_load_balancer_restart_loses_no_event(
    client: LanguageClient, cluster: Cluster, tmp_path: Path
) -> None:
    language = "rust"  # a label no other test uses, so this test's counts stand alone
    # No retention check within the test (its RETAINED events count apart from these).
    await initialize_in(
        client, tmp_path, cluster.address, requestTimeoutS=120, retrieval=False,
        retentionChecksS=[3600],
    )  # fmt: skip
    wid = workspace_id(tmp_path)
    home = cluster.replica_with(await _complete(cluster.address, wid))
    shown = "quill_suggestions_{}_total"
    before = {kind: home.counter(shown.format(kind), language=language)
              for kind in ("shown", "accepted")}  # fmt: skip
    texts = ["fn add(a: i32, b: i32) -> i32 {\n    a +", "fn main() {\n    println!(\"hello",
             "let names = vec![\"a\", \"b\","]  # fmt: skip
    accepted = 0
    for number, text in enumerate(texts):
        uri = (tmp_path / f"lib_{number}.rs").as_uri()
        open_document(client, uri, text, language)
        _, item = await _suggestion(client, uri, text, 120)
        if number < 2:
            await execute(client, item.command.command, *item.command.arguments)
            accepted += 1
    # Restart the balancer while those events wait for their batch (sent every 2 s).
    cluster.balancer.stop()
    cluster.balancer.start().wait_until({r.address for r in cluster.replicas})
    uri = (tmp_path / "after.rs").as_uri()
    open_document(client, uri, texts[0], language)
    took, _ = await _suggestion(client, uri, texts[0], FAILOVER_S)
    print(f"first suggestion after the balancer's restart: {took:.1f} s")
    expected = {"shown": len(texts) + 1, "accepted": accepted}
    for _ in range(60):
        delta = {k: home.counter(shown.format(k), language=language) - v for k, v in before.items()}
        if delta == expected:
            break
        await asyncio.sleep(0.5)
    assert delta == expected
    stats = await execute(client, "quill.stats")
    assert stats["eventsDropped"] == 0


# ---- a full disk during an index save ----


async def test_full_disk_during_an_index_save_keeps_the_last_index(cluster: Cluster) -> None:
    replica = cluster.replicas[0]
    if not replica.on_tmpfs:
        pytest.skip("mounting a tmpfs is not permitted here (needs root); no full disk to test")
    wid = "full-disk"
    files = {f"module_{n}.py": _module(n) for n in range(6)}
    async with open_channel(replica.address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)

        async def sync(**fields: object) -> pb.SyncWorkspaceResponse:
            request = pb.SyncWorkspaceRequest(workspace_id=wid, **fields)  # type: ignore[arg-type]
            return await stub.SyncWorkspace(request, timeout=60)

        await sync(files=[_file(p, t) for p, t in files.items()])
        await _until_indexed(replica, wid, len(files))
        # serving/workspace_registry.py's layout: tenants/<digest of the tenant>/<of the id>/
        name = hashlib.sha256(wid.encode()).hexdigest()[:32]
        (directory,) = replica.data_dir.glob(f"tenants/*/{name}")
        saved = directory / "index" / "index.quill"
        before = b""
        for _ in range(60):  # saved just after the last batch is searchable: wait till it rests
            await asyncio.sleep(2.5)
            if saved.exists() and saved.read_bytes() == before:
                break
            before = saved.read_bytes() if saved.exists() else b""
        errors = replica.counter("quill_storage_errors_total", reason="no_space")

        with _filled(replica.data_dir) as filler:
            # Not a byte free: the sync fails whole and says why.
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await sync(files=[_file("late.py", _module(99))])
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "data folder is full" in (raised.value.details() or "")
            manifest = [pb.FileDigest(path="late.py", sha256=content_digest(_module(99)))]
            assert list((await sync(manifest=manifest)).needed_paths) == ["late.py"]

            # Room for the file, not for the index: the index on disk stays the last whole one.
            _free(filler, 16 * 1024)
            await sync(files=[_file("late.py", _module(99))])
            await _until_indexed(replica, wid, len(files) + 1)
            status = await _status(replica, wid)
            assert "retrieval index" in status.storage_error and "full" in status.storage_error
            assert saved.read_bytes() == before
            assert [p.name for p in saved.parent.iterdir()] == ["index.quill"]
            assert replica.counter("quill_storage_errors_total", reason="no_space") >= errors + 2
            assert await _complete(replica.address, wid)  # serving goes on meanwhile
        # Room again: the next attempt (every 10 s) saves it.
        for _ in range(60):
            if not (await _status(replica, wid)).storage_error:
                break
            await asyncio.sleep(0.5)
        assert (await _status(replica, wid)).storage_error == ""
        assert saved.read_bytes() != before


def _module(number: int) -> str:
    functions = (f"def helper_{number}_{k}(values):\n    return sum(v * {k} for v in values)\n"
                 for k in range(30))  # fmt: skip
    return "\n\n".join(functions)


def _file(path: str, text: str) -> pb.WorkspaceFile:
    return pb.WorkspaceFile(path=path, sha256=content_digest(text), content=text)


@contextlib.contextmanager
def _filled(folder: Path) -> Iterator[Path]:
    """Fill the file system of `folder` to the last byte; the filler goes away afterwards."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (2**20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    try:
        yield filler
    finally:
        filler.unlink()


def _free(filler: Path, size: int) -> None:
    with open(filler, "r+b") as out:
        out.truncate(filler.stat().st_size - size)


# ---- serving restarted under a language server ----


async def test_restart_with_a_request_in_flight_and_unsent_events(
    client: LanguageClient, cluster: Cluster, tmp_path: Path
) -> None:
    replica = cluster.replicas[1]  # straight to it: a restart, not a failover
    # No retention check within the test (its RETAINED events count apart from these).
    await initialize_in(
        client, tmp_path, replica.address, requestTimeoutS=120, retrieval=False,
        retentionChecksS=[3600],
    )  # fmt: skip
    text = 'def greet(name):\n    return "Hello, " +'
    uri = (tmp_path / "greet.py").as_uri()
    open_document(client, uri, text)
    _, item = await _suggestion(client, uri, text, 120)
    await execute(client, item.command.command, *item.command.arguments)
    delivered = (await execute(client, "quill.stats"))["eventsDelivered"]
    # A multi-line request in flight, then SIGTERM before the accept's batch goes out (2 s).
    block = "class Point:\n    def __init__(self, x, y):\n"
    block_uri = (tmp_path / "point.py").as_uri()
    open_document(client, block_uri, block)
    in_flight = asyncio.create_task(complete_at_end(client, block_uri, block))
    await asyncio.sleep(0.3)
    assert replica.serving.process is not None
    replica.serving.process.send_signal(signal.SIGTERM)
    # Answered (what was written in the grace period, or nothing), never left hanging.
    await asyncio.wait_for(in_flight, 30)
    assert replica.serving.process.wait(60) == 0
    cluster.restart(replica)
    # The language server finds serving back by itself and delivers what it held.
    for _ in range(120):
        stats = await execute(client, "quill.stats")
        if stats["eventsDelivered"] > delivered:
            break
        await asyncio.sleep(0.5)
    held = stats["eventsDelivered"] - delivered
    assert held >= 1 and stats["eventsDropped"] == 0  # the accept, at least
    # The new process accounts for every one of them: recorded, or refused as a suggestion it
    # did not issue (the old process's registry did not survive it; issue #16 keeps it).
    accounted = replica.counter("quill_events_rejected_total") + sum(
        replica.counter(f"quill_suggestions_{kind}_total", language="python")
        for kind in ("shown", "accepted", "rejected")
    )
    assert accounted == held
    after = (tmp_path / "after.py").as_uri()
    open_document(client, after, text)
    took, _ = await _suggestion(client, after, text, 60)
    print(f"first suggestion after the restart: {took:.1f} s")


# ---- a replica killed under load ----


async def test_replica_killed_under_load_fails_over_and_comes_back(
    client: LanguageClient, cluster: Cluster, tmp_path: Path
) -> None:
    write_workspace(tmp_path, MAIN)
    wid = workspace_id(tmp_path)
    await initialize_in(client, tmp_path, cluster.address, requestTimeoutS=120)
    home = cluster.replica_with(await _complete(cluster.address, wid))
    other = cluster.other(home)
    await _until_indexed(home, wid, 3)
    uri = (tmp_path / "main.py").as_uri()
    open_document(client, uri, MAIN)
    await _suggestion(client, uri, MAIN, 120)

    # Editors keep both replicas busy (label "lua": their counts stand apart).
    load_language = "lua"
    survivor_events = other.counter("quill_suggestions_shown_total", language=load_language)
    survivor_events += sum(
        other.counter(f"quill_suggestions_{kind}_total", language=load_language)
        for kind in ("accepted", "partially_accepted", "rejected")
    )
    stop = asyncio.Event()
    channels = [open_channel(cluster.address) for _ in range(3)]
    # Pauses long enough for a CPU engine to answer some calls before the next key.
    pace = TypingPace(line_pause=3.0, think_share=0.3, think_pause=6.0)
    settings = EditorSettings(pace, language=load_language, retrieval=False, deadline_s=60.0)
    editors = [
        GrpcEditor(channel, f"load-{n}", f"load_{n}.lua", head, typed, settings, seed=n)
        for n, (channel, (head, typed)) in enumerate(
            zip(channels, source_texts(0, 3, 20, 100_000), strict=True)
        )
    ]
    load = [asyncio.create_task(editor.run(stop)) for editor in editors]
    await asyncio.sleep(5)

    engines = home.engine_processes()
    assert engines, "vLLM's engine core runs in a child process"
    assert home.serving.process is not None
    home.serving.process.send_signal(signal.SIGKILL)
    killed_at = time.perf_counter()
    home.serving.process.wait(30)
    # The workspace's calls reach the other replica at once (no engine in the way: a sync).
    assert await _answering(cluster.address, wid) == other.instance()
    rerouted = time.perf_counter() - killed_at
    print(f"the workspace's calls reached the other replica {rerouted:.2f} s after the kill")
    assert rerouted < REROUTE_S

    # The language server's next suggestions come from the other replica, within seconds.
    next_uri = (tmp_path / "next.py").as_uri()
    open_document(client, next_uri, NEXT)
    took, _ = await _suggestion(client, next_uri, NEXT, FAILOVER_S)
    print(f"the language server's first suggestion after the kill: {took:.1f} s")
    assert await _complete(cluster.address, wid) == other.instance()
    # The workspace was synced there by content hash, without anyone asking.
    await _until_indexed(other, wid, 3)
    # The killed serving's engine processes went with it.
    assert psutil.wait_procs(engines, timeout=60)[1] == []

    for _ in range(120):  # the load goes on against the survivor
        if any(c.outcome == "ok" and c.sent_at > killed_at for e in editors for c in e.tally.calls):
            break
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*load), 120)  # every call ended; none hangs
    for channel in channels:
        await channel.close()
    calls = [c for e in editors for c in e.tally.calls if c.outcome != "stopped"]
    failed = [c for c in calls if c.outcome not in ("ok", "cancelled")]
    assert all(c.sent_at < killed_at + FAILOVER_S for c in failed), [c.outcome for c in failed]
    assert any(c.outcome == "ok" and c.sent_at > killed_at for c in calls), "the load went on"
    # Every event the survivor acknowledged is in its counters: nothing acknowledged is lost.
    acknowledged = sum(e.tally.events_recorded[other.instance()] for e in editors)
    counted = other.counter("quill_suggestions_shown_total", language=load_language) + sum(
        other.counter(f"quill_suggestions_{kind}_total", language=load_language)
        for kind in ("accepted", "partially_accepted", "rejected")
    )
    assert acknowledged > 0 and counted - survivor_events == acknowledged

    # A file changes while the home replica is away; then it comes back.
    changed = BILLING.replace("compute_invoice_total", "invoice_total")
    (tmp_path / "shop" / "billing.py").write_text(changed)
    billing_uri = (tmp_path / "shop" / "billing.py").as_uri()
    open_document(client, billing_uri, changed)
    client.text_document_did_save(_saved(billing_uri))
    home.serving.start(timeout_s=900)
    cluster.balancer.wait_until({r.address for r in cluster.replicas})
    assert await _complete(cluster.address, wid) == home.instance()  # traffic comes back
    back_uri = (tmp_path / "back.py").as_uri()
    open_document(client, back_uri, BACK)
    await _suggestion(client, back_uri, BACK, 120)  # the language server sees it back
    # ... and syncs the workspace to it by content hash: it has the file as changed.
    async with open_channel(home.address) as channel:
        stub = quill_pb2_grpc.QuillStub(channel)
        manifest = [pb.FileDigest(path="shop/billing.py", sha256=content_digest(changed))]
        for _ in range(120):
            answer = await stub.SyncWorkspace(
                pb.SyncWorkspaceRequest(workspace_id=wid, manifest=manifest), timeout=60
            )
            if not answer.needed_paths:
                break
            await asyncio.sleep(0.5)
        assert list(answer.needed_paths) == []


def _saved(uri: str):  # type: ignore[no-untyped-def]
    from lsprotocol import types

    return types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
