"""`quill bench retrieval`: index build, search latency, save-to-searchable, and the effect of
retrieval on completions through the real serving path.

- build: a real source tree (default: the installed setuptools, about 100k lines) chunked,
  embedded and indexed; files/s, chunks/s, peak RSS.
- search: the end-to-end retrieval step on that index (query embedding + FAISS + BM25 + fusion),
  and the query embedding alone.
- FAISS alone at 10k and 100k vectors: the real chunk vectors, topped up with perturbed copies
  (a 100k-chunk tree would take hours to embed on 2 cores); the index's own policy (exact up to
  its HNSW threshold, HNSW beyond) side by side with exact search, and HNSW's recall@10.
- save_to_searchable: a typical file of the tree changes, goes through the workspace registry
  (serving/workspaces.py, the SyncWorkspace path minus the socket) until its new chunk is found.
- completions: a repository-level set built from a real package none of us wrote (default:
  the installed click): a line that calls a name defined in another file of the package is
  masked; `quill serve` (real vLLM) completes it with retrieval on and off; exact match,
  identifier match and whether the cross-file name appears.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
import resource
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from quill_cli.bench.cross_file import CrossFileTask, build_tasks
from quill_cli.bench.report import machine_info, summarize_ms, write_json

_SITE = Path(sysconfig.get_paths()["purelib"])
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("retrieval", help="index build, search latency, effect on completions")
    p.add_argument("--tree", type=Path, default=_SITE / "setuptools", help="tree to index")
    p.add_argument("--repo", type=Path, default=_SITE / "click", help="package for the set")
    p.add_argument("--limit", type=int, default=30, help="masked-line tasks")
    p.add_argument("--queries", type=int, default=200, help="search queries per measurement")
    p.add_argument("--sizes", default="10000,100000", help="FAISS sizes")
    p.add_argument("--max-files", type=int, default=0, help="cap the tree (0: all of it)")
    p.add_argument("--skip-completions", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quill import envs

    envs.force_offline()
    figures: dict[str, Any] = {"machine": machine_info()}
    from retrieval.embedding import Embedder

    embedder = Embedder(threads=1)  # as serving runs it (serving/workspaces.py)
    index, build = _build(embedder, args.tree, args.max_files)
    figures["build"] = build
    queries = _queries(index, args.queries, args.seed)
    figures["retrieval_step"] = _retrieval_step(embedder, index, queries)
    print(f"build {figures['build']}\nstep {figures['retrieval_step']}", file=sys.stderr)
    figures["faiss"] = _faiss(index, embedder, queries, [int(s) for s in args.sizes.split(",")])
    figures["faiss_search_p50_ms_100k"] = (
        figures["faiss"].get("100000", {}).get("policy", {}).get("p50_ms")
    )
    figures["save_to_searchable"] = asyncio.run(_save_to_searchable(embedder, args.tree))
    figures["save_to_searchable_s"] = figures["save_to_searchable"]["median_s"]
    if not args.skip_completions:
        figures["completions"] = asyncio.run(_completions(args.repo, args.limit, args.seed))
        for mode in ("with", "without"):
            figures[f"exact_match_{mode}_retrieval"] = figures["completions"][mode]["exact_match"]
    write_json(args.json, figures)
    return 0


# ---- build ----


def _build(embedder: Any, tree: Path, max_files: int) -> tuple[Any, dict[str, Any]]:
    from quill.workspace_files import walk_workspace
    from retrieval.index import WorkspaceIndex

    files = list(walk_workspace(tree))
    if max_files:
        files = files[:max_files]
    lines = sum(f.text.count("\n") + 1 for f in files)
    index = WorkspaceIndex(embedder)
    started = time.perf_counter()
    for start in range(0, len(files), 16):
        batch = files[start : start + 16]
        index.update_files([(f.path, f.text, None) for f in batch])
        print(f"\rindexed {start + len(batch)}/{len(files)} files", end="", file=sys.stderr)
    print(file=sys.stderr)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as directory:
        index.directory = Path(directory)
        saved = time.perf_counter()
        index.update_file("_touch.py", "x = 1\n")  # make it dirty
        index.save()
        save_s = time.perf_counter() - saved
        size = sum(p.stat().st_size for p in Path(directory).iterdir())
        index.directory = None
    return index, {
        "tree": str(tree),
        "files": len(files),
        "lines": lines,
        "chunks": index.chunk_count,
        "seconds": round(seconds, 1),
        "files_per_s": round(len(files) / seconds, 1),
        "chunks_per_s": round(index.chunk_count / seconds, 1),
        "lines_per_s": round(lines / seconds),
        "save_s": round(save_s, 3),
        "index_file_mb": round(size / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _queries(index: Any, count: int, seed: int) -> list[str]:
    """Code before random lines of the indexed files, as the completion path builds it."""
    from serving.retrieval_context import retrieval_query

    rng = random.Random(seed)
    paths = index.paths()
    queries = []
    for _ in range(count):
        chunks = index.chunks_of(rng.choice(paths))
        if not chunks:
            continue
        text = rng.choice(chunks).text
        cut = rng.randrange(0, max(1, len(text)))
        queries.append(retrieval_query(text[:cut], ""))
    return [q for q in queries if q.strip()]


def _retrieval_step(embedder: Any, index: Any, queries: list[str]) -> dict[str, Any]:
    embed, step, search = [], [], []
    for query in queries:
        started = time.perf_counter()
        vector = embedder.encode([query])[0]
        embedded = time.perf_counter()
        index.search(query, 6, query_vector=vector)
        done = time.perf_counter()
        embed.append(embedded - started)
        search.append(done - embedded)
        step.append(done - started)
    return {
        "end_to_end": summarize_ms(step),
        "query_embedding": summarize_ms(embed),
        "search_without_embedding": summarize_ms(search),
    }


# ---- FAISS at scale ----


def _faiss(index: Any, embedder: Any, queries: list[str], sizes: list[int]) -> dict[str, Any]:
    import numpy as np

    from retrieval.vector_index import DEFAULT_HNSW_THRESHOLD, VectorIndex

    base = index._vectors._index.index.reconstruct_n(0, index._vectors._index.ntotal)
    query_vectors = embedder.encode(queries)
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"hnsw_threshold": DEFAULT_HNSW_THRESHOLD}
    for size in sizes:
        picks = rng.integers(0, len(base), size)
        vectors = base[picks] + rng.normal(0, 0.05, (size, base.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        figures: dict[str, Any] = {}
        exact_ids = None
        for name, threshold in (("exact", 10**12), ("policy", DEFAULT_HNSW_THRESHOLD)):
            vector_index = VectorIndex(base.shape[1], hnsw_threshold=threshold)
            built = time.perf_counter()
            vector_index.add(np.arange(size), vectors)
            build_s = time.perf_counter() - built
            samples = []
            found = []
            for query in query_vectors:
                started = time.perf_counter()
                ids, _ = vector_index.search(query, 10)
                samples.append(time.perf_counter() - started)
                found.append(ids[0])
            figures[name] = {
                **{k: v for k, v in summarize_ms(samples).items() if k != "mean_ms"},
                "kind": "hnsw" if vector_index.is_hnsw else "flat",
                "build_s": round(build_s, 1),
            }
            if name == "exact":
                exact_ids = found
            elif exact_ids is not None:
                recall = statistics.fmean(
                    len(set(a.tolist()) & set(b.tolist())) / 10
                    for a, b in zip(found, exact_ids, strict=True)
                )
                figures[name]["recall_at_10"] = round(recall, 3)
        results[str(size)] = figures
        print(f"faiss {size}: {figures}", file=sys.stderr)
    return results


# ---- save to searchable ----


async def _save_to_searchable(embedder: Any, tree: Path, files: int = 12) -> dict[str, Any]:
    from quill.v1 import quill_pb2 as pb
    from quill.workspace_files import walk_workspace
    from serving.workspace_registry import WorkspaceRegistry
    from serving.workspaces import WorkspaceKey

    texts = list(walk_workspace(tree))[:files]
    typical = sorted(texts, key=lambda f: len(f.text))[len(texts) // 2]
    samples = []
    with tempfile.TemporaryDirectory() as directory:
        registry = WorkspaceRegistry(Path(directory), lambda: embedder)
        workspace = registry.get_or_create(WorkspaceKey("bench", "bench"))
        await workspace.apply(
            pb.SyncWorkspaceRequest(
                workspace_id="bench",
                files=[pb.WorkspaceFile(path=f.path, content=f.text) for f in texts],
            )
        )
        await workspace.wait_indexed()
        for round_number in range(5):
            marker = f"quill_marker_function_{round_number}"
            text = typical.text + f"\n\ndef {marker}(value):\n    return value * {round_number}\n"
            started = time.perf_counter()
            await workspace.apply(
                pb.SyncWorkspaceRequest(
                    workspace_id="bench",
                    files=[pb.WorkspaceFile(path=typical.path, content=text)],
                )
            )
            while True:
                hits = await asyncio.to_thread(workspace.search, marker, 1)
                if hits and marker in hits[0].text:
                    break
                await asyncio.sleep(0.005)
            samples.append(time.perf_counter() - started)
        await registry.close()
    return {
        "file": typical.path,
        "file_lines": typical.text.count("\n") + 1,
        "samples_s": [round(s, 3) for s in samples],
        "median_s": round(statistics.median(samples), 3),
    }


# ---- completions with and without retrieval ----


def identifiers(text: str) -> list[str]:
    return _IDENTIFIER.findall(text)


async def _completions(repo: Path, limit: int, seed: int) -> dict[str, Any]:
    from quill.channel import open_channel
    from quill.v1 import quill_pb2 as pb
    from quill.v1 import quill_pb2_grpc
    from quill.workspace_files import walk_workspace
    from quill_cli.launcher import ServingProcess

    tasks = build_tasks(repo, limit, seed)
    files = list(walk_workspace(repo))
    workspace_id = hashlib.sha256(str(repo).encode()).hexdigest()[:16]
    results: dict[str, Any] = {"repo": str(repo), "tasks": len(tasks), "files": len(files)}
    with tempfile.TemporaryDirectory() as directory:
        serving = ServingProcess(extra_args=["--data-dir", directory])
        serving.start(timeout_s=900)
        try:
            async with open_channel(serving.address) as channel:
                stub = quill_pb2_grpc.QuillStub(channel)
                started = time.perf_counter()
                for start in range(0, len(files), 32):
                    await stub.SyncWorkspace(
                        pb.SyncWorkspaceRequest(
                            workspace_id=workspace_id,
                            files=[
                                pb.WorkspaceFile(path=f.path, content=f.text)
                                for f in files[start : start + 32]
                            ],
                        )
                    )
                while True:
                    status = (
                        await stub.SyncWorkspace(pb.SyncWorkspaceRequest(workspace_id=workspace_id))
                    ).status
                    if status.files_pending == 0 and status.files_indexed == len(files):
                        break
                    await asyncio.sleep(0.5)
                results["index_s"] = round(time.perf_counter() - started, 1)
                results["chunks"] = status.chunks
                # Let the query model load before the first measured completion.
                await _complete(stub, workspace_id, tasks[0], True)
                for mode, retrieval in (("with", True), ("without", False)):
                    exact = ident = symbol = used = 0
                    latency = []
                    for task in tasks:
                        began = time.perf_counter()
                        done = await _complete(stub, workspace_id, task, retrieval)
                        latency.append(time.perf_counter() - began)
                        predicted = done.text.strip()
                        exact += predicted == task.target
                        ident += identifiers(predicted) == identifiers(task.target)
                        symbol += task.symbol in identifiers(predicted)
                        used += bool(done.context_sources)
                    count = max(1, len(tasks))
                    results[mode] = {
                        "exact_match": round(exact / count, 3),
                        "identifier_match": round(ident / count, 3),
                        "cross_file_symbol_used": round(symbol / count, 3),
                        "with_context_sources": round(used / count, 3),
                        "latency": summarize_ms(latency),
                    }
                    print(f"{mode} retrieval: {results[mode]}", file=sys.stderr)
        finally:
            serving.stop()
    return results


async def _complete(stub: Any, workspace_id: str, task: CrossFileTask, retrieval: bool) -> Any:
    from quill.v1 import quill_pb2 as pb

    request = pb.CompleteRequest(
        workspace_id=workspace_id,
        file_path=task.path,
        language="python",
        prefix=task.prefix,
        suffix=task.suffix,
        cursor=pb.Position(line=task.line, character=len(task.prefix.rsplit("\n", 1)[-1])),
        mode=pb.COMPLETION_MODE_SINGLE_LINE,
        context=pb.ContextOptions(disable_retrieval=not retrieval, disable_api_search=True),
    )
    done = None
    async for response in stub.Complete(request, timeout=120):
        if response.HasField("done"):
            done = response.done
    return done
