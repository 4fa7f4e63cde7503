"""A workspace's retrieval index: chunks of its files, dense and lexical, persisted atomically.

Files are added, updated and deleted by path; each file's chunks get fresh integer ids in the
vector index (FAISS) and in the BM25 index, so an update is "remove the file's old ids, add the
new ones". Search fuses the two rankings by reciprocal rank.

Persistence: `save()` writes one file (metadata JSON + the serialised FAISS index) atomically, so
a process killed at any moment leaves the last saved state, in which every file listed has all
of its chunks in both indices. Files indexed after that save are simply redone: callers compare
`file_digest(path)` with the content's digest and re-add what differs.

Thread safety: all methods may be called from any thread. Chunking and embedding (the slow part
of an update) run outside the lock; only the swap of ids happens under it, so searches wait at
most for that swap.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quill.digest import content_digest
from retrieval.chunking import Chunk, chunk_file
from retrieval.embedding import Embedder
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import BM25Index, tokenize_code
from retrieval.persistence import atomic_write, remove_stale_temporaries
from retrieval.vector_index import DEFAULT_HNSW_THRESHOLD, VectorIndex

logger = logging.getLogger(__name__)

INDEX_FILE = "index.quill"
_MAGIC = b"QUILLIX1"
_FORMAT_VERSION = 1
# Candidates taken from each signal before fusion, per requested hit.
_CANDIDATES_PER_HIT = 4
_MIN_CANDIDATES = 20


@dataclass(frozen=True)
class Hit:
    path: str
    # One-based, inclusive.
    start_line: int
    end_line: int
    text: str
    score: float


def embedding_text(chunk: Chunk) -> str:
    """What the model embeds: the path gives it the module's vocabulary too."""
    return f"{chunk.path}\n{chunk.text}"


@dataclass
class _FileEntry:
    digest: str
    chunk_ids: list[int]


class WorkspaceIndex:
    def __init__(
        self,
        embedder: Embedder,
        directory: Path | None = None,
        hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
    ) -> None:
        """An empty index; `directory` (optional) is where `save` writes and `load` reads."""
        self._embedder = embedder
        self.directory = directory
        self._vectors = VectorIndex(embedder.dimension, hnsw_threshold)
        self._lexical = BM25Index()
        self._files: dict[str, _FileEntry] = {}
        self._chunks: dict[int, Chunk] = {}
        self._next_id = 0
        self._lock = threading.RLock()
        self._dirty = False

    # ---- state ----

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._files)

    def file_digest(self, path: str) -> str | None:
        with self._lock:
            entry = self._files.get(path)
            return entry.digest if entry else None

    @property
    def chunk_count(self) -> int:
        with self._lock:
            return len(self._chunks)

    @property
    def dirty(self) -> bool:
        return self._dirty

    def chunks_of(self, path: str) -> list[Chunk]:
        with self._lock:
            entry = self._files.get(path)
            return [self._chunks[i] for i in entry.chunk_ids] if entry else []

    # ---- changes ----

    def update_file(self, path: str, text: str, digest: str | None = None) -> int:
        """Index (or re-index) one file; returns its number of chunks."""
        return self.update_files([(path, text, digest)])

    def update_files(self, files: Sequence[tuple[str, str, str | None]]) -> int:
        """Index several files with one embedding batch; returns the number of chunks added."""
        prepared: list[tuple[str, str, list[Chunk]]] = []
        for path, text, digest in files:
            prepared.append((path, digest or content_digest(text), chunk_file(path, text)))
        all_chunks = [chunk for _, _, chunks in prepared for chunk in chunks]
        vectors = self._embedder.encode([embedding_text(c) for c in all_chunks])
        tokens = [tokenize_code(f"{c.path} {c.name} {c.text}") for c in all_chunks]
        with self._lock:
            ids: list[int] = []
            position = 0
            for path, digest, chunks in prepared:
                self._remove_locked(path)
                chunk_ids = list(range(self._next_id, self._next_id + len(chunks)))
                self._next_id += len(chunks)
                self._files[path] = _FileEntry(digest, chunk_ids)
                for chunk_id, chunk in zip(chunk_ids, chunks, strict=True):
                    self._chunks[chunk_id] = chunk
                    self._lexical.add_tokens(chunk_id, tokens[position])
                    position += 1
                ids += chunk_ids
            self._vectors.add(ids, vectors)
            self._dirty = True
        return len(all_chunks)

    def remove_file(self, path: str) -> bool:
        with self._lock:
            removed = self._remove_locked(path)
            self._dirty = self._dirty or removed
            return removed

    def _remove_locked(self, path: str) -> bool:
        entry = self._files.pop(path, None)
        if entry is None:
            return False
        self._vectors.remove(entry.chunk_ids)
        self._lexical.remove(entry.chunk_ids)
        for chunk_id in entry.chunk_ids:
            del self._chunks[chunk_id]
        return True

    # ---- search ----

    def search(
        self,
        query: str,
        k: int = 5,
        exclude_path: str | None = None,
        exclude_lines: tuple[int, int] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The k chunks most relevant to `query`, best first.

        `exclude_path` drops that file's chunks: all of them, or with `exclude_lines`
        (one-based, inclusive) only those overlapping those lines.
        """
        if k <= 0 or not query.strip():
            return []
        if query_vector is None:
            query_vector = self._embedder.encode([query])[0]
        candidates = max(_MIN_CANDIDATES, k * _CANDIDATES_PER_HIT)
        with self._lock:
            if not self._chunks:
                return []
            ids, _ = self._vectors.search(query_vector, candidates)
            dense = [
                int(i)
                for i in ids[0]
                if i >= 0 and self._allowed(int(i), exclude_path, exclude_lines)
            ]
            lexical = [
                i
                for i, _ in self._lexical.search(query, candidates)
                if self._allowed(i, exclude_path, exclude_lines)
            ]
            fused = reciprocal_rank_fusion([dense, lexical])[:k]
            return [
                Hit(c.path, c.start_line, c.end_line, c.text, score)
                for c, score in ((self._chunks[i], s) for i, s in fused)
            ]

    def _allowed(
        self, chunk_id: int, exclude_path: str | None, exclude_lines: tuple[int, int] | None
    ) -> bool:
        chunk = self._chunks.get(chunk_id)
        if chunk is None:
            return False
        if exclude_path is None or chunk.path != exclude_path:
            return True
        if exclude_lines is None:
            return False
        start, end = exclude_lines
        return chunk.end_line < start or chunk.start_line > end

    # ---- persistence ----

    def save(self) -> None:
        """Write the whole index atomically to `directory` (no-op without one)."""
        if self.directory is None:
            return
        with self._lock:
            meta = {
                "version": _FORMAT_VERSION,
                "model": self._embedder.model_path,
                "dimension": self._embedder.dimension,
                "next_id": self._next_id,
                "files": {
                    path: {
                        "digest": entry.digest,
                        "chunks": [
                            [i, c.start_line, c.end_line, c.kind, c.name, c.text]
                            for i, c in ((i, self._chunks[i]) for i in entry.chunk_ids)
                        ],
                    }
                    for path, entry in self._files.items()
                },
            }
            vectors = self._vectors.serialize().tobytes()
            self._dirty = False
        header = json.dumps(meta, separators=(",", ":")).encode("utf-8", "surrogatepass")
        try:
            atomic_write(
                self.directory / INDEX_FILE,
                _MAGIC + struct.pack("<Q", len(header)) + header + vectors,
            )
        except BaseException:
            with self._lock:
                self._dirty = True  # not on disk: the next save writes it
            raise

    @classmethod
    def load(
        cls,
        embedder: Embedder,
        directory: Path,
        hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
    ) -> WorkspaceIndex:
        """The index saved in `directory`, or an empty one (a damaged or foreign file is logged
        and ignored: everything is re-indexed from the files)."""
        index = cls(embedder, directory, hnsw_threshold)
        remove_stale_temporaries(directory)
        path = directory / INDEX_FILE
        if not path.exists():
            return index
        try:
            index._restore(path.read_bytes(), hnsw_threshold)
        except (OSError, ValueError, KeyError, TypeError, struct.error, RuntimeError) as error:
            logger.warning("ignoring the saved index %s (%s); re-indexing", path, error)
            return cls(embedder, directory, hnsw_threshold)
        return index

    def _restore(self, data: bytes, hnsw_threshold: int) -> None:
        if not data.startswith(_MAGIC):
            raise ValueError("not a Quill index file")
        (length,) = struct.unpack_from("<Q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        meta: dict[str, Any] = json.loads(
            data[start : start + length].decode("utf-8", "surrogatepass")
        )
        if meta.get("version") != _FORMAT_VERSION:
            raise ValueError(f"format version {meta.get('version')}")
        if (
            meta["dimension"] != self._embedder.dimension
            or meta["model"] != self._embedder.model_path
        ):
            raise ValueError(f"built with another embedding model ({meta['model']})")
        vectors = VectorIndex.deserialize(
            np.frombuffer(data, dtype=np.uint8, offset=start + length), hnsw_threshold
        )
        chunks: dict[int, Chunk] = {}
        files: dict[str, _FileEntry] = {}
        for path, entry in meta["files"].items():
            ids = []
            for chunk_id, first, last, kind, name, text in entry["chunks"]:
                chunks[chunk_id] = Chunk(path, first, last, text, kind, name)
                ids.append(chunk_id)
            files[path] = _FileEntry(entry["digest"], ids)
        stored = set(vectors.ids().tolist())
        if stored != set(chunks):
            raise ValueError(f"{len(stored)} vectors for {len(chunks)} chunks")
        lexical = BM25Index()
        for chunk_id, chunk in chunks.items():
            lexical.add_tokens(chunk_id, tokenize_code(f"{chunk.path} {chunk.name} {chunk.text}"))
        self._vectors, self._lexical, self._chunks, self._files = vectors, lexical, chunks, files
        self._next_id = int(meta["next_id"])
