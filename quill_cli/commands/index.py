"""`quill index PATH`: build (or bring up to date) the retrieval index of a source tree.

Uses the retrieval library directly (no serving needed), shows a progress bar on stderr, saves
after every batch so an interrupted run keeps what it finished and the next run redoes only the
rest, and prints a JSON summary on stdout. `--search QUERY` then prints the best chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

from quill import envs

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="index a source tree for retrieval (progress on stderr)")
    p.add_argument("path", type=Path)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the index goes (default <cache dir>/data/index/<digest of PATH>)",
    )
    p.add_argument("--max-file-bytes", type=int, default=1_000_000)
    p.add_argument("--batch-files", type=int, default=16, help="files embedded per batch")
    p.add_argument("--search", default=None, metavar="QUERY", help="then print the best chunks")
    p.add_argument("-k", type=int, default=5, help="chunks printed by --search")
    p.set_defaults(func=run)


def default_index_dir(root: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
    return envs.cache_dir() / "data" / "index" / digest


def run(args: argparse.Namespace) -> int:
    envs.force_offline()
    root: Path = args.path
    if not root.is_dir():
        logger.error("%s is not a directory", root)
        return 2
    from tqdm import tqdm

    from quill.workspace_files import walk_workspace
    from retrieval.embedding import Embedder
    from retrieval.index import WorkspaceIndex, content_digest

    directory = args.data_dir or default_index_dir(root)
    started = time.perf_counter()
    skipped: dict[str, str] = {}

    def on_skip(path: str, reason: str) -> None:
        skipped[path] = reason
        logger.info("skipped %s: %s", path, reason)

    files = list(walk_workspace(root, args.max_file_bytes, on_skip))
    index = WorkspaceIndex.load(Embedder(), directory)
    current = {f.path for f in files}
    for stale in [p for p in index.paths() if p not in current]:
        index.remove_file(stale)
    todo = [f for f in files if index.file_digest(f.path) != content_digest(f.text)]
    reused = len(files) - len(todo)
    chunks = 0
    with tqdm(
        total=len(files), initial=reused, unit="file", file=sys.stderr, desc="indexing"
    ) as bar:
        for start in range(0, len(todo), args.batch_files):
            batch = todo[start : start + args.batch_files]
            chunks += index.update_files([(f.path, f.text, None) for f in batch])
            index.save()  # after every batch: a kill loses at most this batch
            bar.update(len(batch))
    index.save()
    summary = {
        "index": str(directory),
        "files": len(files),
        "indexed": len(todo),
        "reused": reused,
        "skipped": len(skipped),
        "chunks_added": chunks,
        "chunks": index.chunk_count,
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(summary))
    if args.search:
        for hit in index.search(args.search, args.k):
            print(f"{hit.score:.4f} {hit.path}:{hit.start_line}-{hit.end_line}")
    return 0
