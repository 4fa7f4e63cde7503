"""The lexical signal: code-aware tokens and an incremental BM25 index over them.

Identifiers are split the way people search for them: `parseHTTPResponse` and
`parse_http_response` both give `parse`, `http`, `response`; the whole identifier is kept too,
so an exact name still ranks first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
# Boundaries inside an identifier: lower->Upper, ACRONYMWord, letters<->digits.
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_MIN_TOKEN_CHARS = 2


def tokenize_code(text: str) -> list[str]:
    """Lower-cased identifier parts (and whole identifiers) of `text`, in order."""
    tokens: list[str] = []
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        parts = [p for piece in word.split("_") for p in _CAMEL.findall(piece)]
        lowered = word.lower().strip("_")
        if len(parts) > 1 and len(lowered) >= _MIN_TOKEN_CHARS:
            tokens.append(lowered)
        tokens.extend(p.lower() for p in parts if len(p) >= _MIN_TOKEN_CHARS)
    return tokens


class BM25Index:
    """Okapi BM25 over documents added and removed by integer id.

    Postings are kept per term, so a search touches only the documents sharing a term with the
    query; statistics (document count, average length) are exact after every change.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self._k1 = k1
        self._b = b
        self._postings: dict[str, dict[int, int]] = {}
        self._lengths: dict[int, int] = {}
        # Each document's distinct terms, so removal touches only its own posting lists.
        self._terms: dict[int, tuple[str, ...]] = {}
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._lengths

    def add(self, doc_id: int, text: str) -> None:
        self.add_tokens(doc_id, tokenize_code(text))

    def add_tokens(self, doc_id: int, tokens: Iterable[str]) -> None:
        if doc_id in self._lengths:
            self.remove([doc_id])
        counts = Counter(tokens)
        length = sum(counts.values())
        self._lengths[doc_id] = length
        self._total_length += length
        self._terms[doc_id] = tuple(counts)
        for term, count in counts.items():
            self._postings.setdefault(term, {})[doc_id] = count

    def remove(self, doc_ids: Iterable[int]) -> None:
        for doc_id in doc_ids:
            if doc_id not in self._lengths:
                continue
            self._total_length -= self._lengths.pop(doc_id)
            for term in self._terms.pop(doc_id):
                postings = self._postings[term]
                del postings[doc_id]
                if not postings:
                    del self._postings[term]

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.search_tokens(tokenize_code(query), k)

    def search_tokens(self, tokens: Iterable[str], k: int) -> list[tuple[int, float]]:
        return search_together([self], tokens, k)


def search_together(
    indices: Sequence[BM25Index], tokens: Iterable[str], k: int
) -> list[tuple[int, float]]:
    """BM25 over several indices as if they were one (document count, term frequencies and
    average length of them all), so their scores compare; ids must not repeat across them."""
    count = sum(len(index._lengths) for index in indices)
    if count == 0 or k <= 0:
        return []
    average = sum(index._total_length for index in indices) / count or 1.0
    scores: dict[int, float] = {}
    for term in set(tokens):
        lists = [(index, index._postings.get(term)) for index in indices]
        frequency = sum(len(postings) for _, postings in lists if postings)
        if not frequency:
            continue
        idf = math.log(1.0 + (count - frequency + 0.5) / (frequency + 0.5))
        for index, postings in lists:
            k1, b = index._k1, index._b
            for doc_id, tf in (postings or {}).items():
                norm = k1 * (1.0 - b + b * index._lengths[doc_id] / average)
                scores[doc_id] = scores.get(doc_id, 0.0) + idf * tf * (k1 + 1) / (tf + norm)
    best = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
    return best[:k]
