"""Prompt context from the editor itself: other open documents and recently edited regions.

What users ask for most beside the repository index is the code they have open and the code
they just wrote. Both live only in the editor, so the language server picks from them and sends
the picks with the request (`ContextOptions.snippets`); serving places them with the retrieved
chunks (serving/retrieval_context.py).

- Open documents: windows of `WINDOW_LINES` lines every `WINDOW_STEP` lines of every other open
  document (Cody's and Continue's open-tab retrievers use 50- and 60-line windows; 20 fits the
  default 512-token budget several times).
- Recent edits: the regions changed last (up to `MAX_EDIT_REGIONS`, most recent first), found by
  comparing each document's text before and after a change (lsp_server/edits.py), with
  `EDIT_MARGIN_LINES` lines around each; a region longer than a window is offered by its window
  most like the query.

The query is the last `QUERY_LINES` lines before the cursor. Candidates are ranked by the Jaccard
similarity of their identifier sets to the query's (keywords left out), at most
`MAX_PER_DOCUMENT` non-overlapping windows per document, and taken best first while they fit the
character budget; where a recent edit and a window of the same document overlap, the better one
stays. A candidate that defines (`def`, `class`, `function`, ...) a name the current document
imports gets `IMPORTED_DEFINITION_BONUS` on top: the name the user is about to type is often
not in the lines before the cursor yet, so similarity alone rarely finds its definition (4 of
20 definitions on the repository-level benchmark set, 18 of 20 with the bonus;
docs/benchmarks.md).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lsp_server.edits import change_span

WINDOW_LINES = 20
WINDOW_STEP = 10
QUERY_LINES = 20
EDIT_MARGIN_LINES = 3
MAX_EDIT_REGIONS = 16
MAX_PER_DOCUMENT = 2
MAX_SNIPPETS = 8
# Documents larger than this are not windowed (a generated file is rarely the context wanted).
MAX_DOCUMENT_CHARS = 500_000
# The budget is in prompt tokens; code runs about 3-4 characters per token. Serving counts
# real tokens and drops what does not fit, so this only bounds what is sent.
CHARS_PER_TOKEN = 4
# Added to the similarity of a candidate that defines a name the current document imports (a
# Jaccard similarity is at most 1; most windows score under 0.2).
IMPORTED_DEFINITION_BONUS = 0.3
# Where a document's imports are looked for: its start (they are there in practice, and a huge
# document is not scanned at every keystroke).
IMPORTS_CHARS = 100_000
OPEN_DOCUMENT = "open_document"
RECENT_EDIT = "recent_edit"

# Identifiers of two characters or more: `i`, `x`, `a` match everywhere and say nothing.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
_STOP_WORDS = frozenset(keyword.kwlist) | frozenset(
    {
        "self", "this", "cls", "const", "let", "var", "val", "function", "func", "fn", "new",
        "public", "private", "protected", "static", "void", "int", "str", "string", "bool",
        "package", "export", "default", "type", "struct", "interface", "impl", "mut", "pub",
    }
)  # fmt: skip


def identifiers(text: str) -> frozenset[str]:
    """The identifiers of `text` that say something (one letter, keywords and the like left
    out)."""
    return frozenset(w for w in _IDENTIFIER.findall(text) if w not in _STOP_WORDS)


# Import statements (Python, JavaScript/TypeScript, Java, Go, Rust `use`): the names after the
# keyword, and a parenthesised Python import list across lines.
_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+\S+[ \t]+import|import|use)\b(.*)$", re.MULTILINE)
_IMPORT_LIST = re.compile(r"^[ \t]*from[ \t]+\S+[ \t]+import[ \t]*\(([^)]*)\)", re.MULTILINE)
# A definition at the start of a line: the name after the keyword.
_DEFINITION = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:async[ \t]+)?"
    r"(?:def|class|function|func|fn|struct|interface|enum|trait|type)[ \t]+([A-Za-z_]\w*)",
    re.MULTILINE,
)


def imported_names(source: str) -> frozenset[str]:
    """The names `source`'s import statements bring in (and the modules they come from, which
    no window defines)."""
    names: set[str] = set()
    for pattern in (_IMPORT_LINE, _IMPORT_LIST):
        for match in pattern.finditer(source):
            names.update(_IDENTIFIER.findall(match.group(1)))
    return frozenset(names - _STOP_WORDS)


def defined_names(text: str) -> frozenset[str]:
    return frozenset(_DEFINITION.findall(text))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


@dataclass(frozen=True)
class Snippet:
    kind: str  # OPEN_DOCUMENT or RECENT_EDIT
    uri: str
    start_line: int  # zero-based, inclusive
    end_line: int
    text: str
    score: float

    def overlaps(self, other: Snippet) -> bool:
        return (
            self.uri == other.uri
            and self.start_line <= other.end_line
            and other.start_line <= self.end_line
        )


@dataclass(frozen=True)
class _Window:
    start_line: int
    end_line: int
    words: frozenset[str]
    defines: frozenset[str]


def _score(
    query: frozenset[str], words: frozenset[str], defines: frozenset[str], imported: frozenset[str]
) -> float:
    """Similarity to the query, and the bonus for defining a name the document imports."""
    bonus = IMPORTED_DEFINITION_BONUS if defines & imported else 0.0
    return jaccard(query, words) + bonus


@dataclass(frozen=True)
class OpenDocument:
    uri: str
    source: str


class WindowCache:
    """Each open document's lines, windows and their identifier sets, kept per document text,
    so documents the user is not typing in are split only once. Keyed by the text itself (the
    same string object, or an equal one), not by the version number: a client may send a change
    without a new version, and stale windows would put old text in the prompt."""

    def __init__(self) -> None:
        self._by_uri: dict[str, tuple[str, list[str], list[_Window]]] = {}

    def windows(self, document: OpenDocument) -> tuple[list[str], list[_Window]]:
        cached = self._by_uri.get(document.uri)
        if cached is not None and (cached[0] is document.source or cached[0] == document.source):
            return cached[1], cached[2]
        lines = document.source.split("\n")
        starts = list(range(0, max(1, len(lines) - WINDOW_LINES + 1), WINDOW_STEP))
        if starts[-1] + WINDOW_LINES < len(lines):
            starts.append(len(lines) - WINDOW_LINES)
        texts = ["\n".join(lines[start : start + WINDOW_LINES]) for start in starts]
        windows = [
            _Window(
                start,
                min(len(lines), start + WINDOW_LINES) - 1,
                identifiers(text),
                defined_names(text),
            )
            for start, text in zip(starts, texts, strict=True)
        ]
        self._by_uri[document.uri] = (document.source, lines, windows)
        return lines, windows

    def forget(self, uri: str) -> None:
        self._by_uri.pop(uri, None)


class RecentEdits:
    """The regions of open documents changed last, as zero-based inclusive line ranges that
    move with later edits; most recent first."""

    def __init__(self, capacity: int = MAX_EDIT_REGIONS) -> None:
        self._capacity = capacity
        self._texts: dict[str, str] = {}
        # (uri, first line, last line), most recent first.
        self._regions: list[tuple[str, int, int]] = []

    def opened(self, uri: str, text: str) -> None:
        self._texts[uri] = text

    def changed(self, uri: str, text: str) -> None:
        old = self._texts.get(uri)
        self._texts[uri] = text
        if old is None:
            return  # opened before this server knew it: follows from now on
        span = change_span(old, text)
        if span is None:
            return
        first = old.count("\n", 0, span.start)
        # The lines holding the changed characters, before and after (a change that ends with
        # a newline does not reach into the next line).
        old_last = first + old.count("\n", span.start, max(span.start, span.old_end - 1))
        new_last = first + text.count("\n", span.start, max(span.start, span.new_end - 1))
        shift = text.count("\n", span.start, span.new_end) - old.count(
            "\n", span.start, span.old_end
        )
        merged_first, merged_last = first, new_last
        kept: list[tuple[str, int, int]] = []
        for region_uri, start, end in self._regions:
            if region_uri != uri or end < first - 1:
                kept.append((region_uri, start, end))
            elif start > old_last + 1:
                kept.append((region_uri, start + shift, end + shift))
            else:  # touches the change: one region with it
                merged_first = min(merged_first, start)
                merged_last = max(merged_last, end + shift if end > old_last else end)
        self._regions = [(uri, merged_first, merged_last), *kept][: self._capacity]

    def closed(self, uri: str) -> None:
        self._texts.pop(uri, None)
        self._regions = [r for r in self._regions if r[0] != uri]

    def regions(self) -> list[tuple[str, int, int]]:
        return list(self._regions)


def query_identifiers(prefix: str) -> frozenset[str]:
    """The identifiers of the code at the cursor: the last QUERY_LINES lines before it."""
    return identifiers("\n".join(prefix.split("\n")[-QUERY_LINES:]))


def open_document_candidates(
    query: frozenset[str],
    documents: Iterable[OpenDocument],
    cache: WindowCache,
    imported: frozenset[str] = frozenset(),
) -> list[Snippet]:
    """The best windows of each document (at most MAX_PER_DOCUMENT, not overlapping)."""
    found: list[Snippet] = []
    for document in documents:
        lines, windows = cache.windows(document)
        scored = sorted(
            ((_score(query, w.words, w.defines, imported), w) for w in windows),
            key=lambda pair: -pair[0],
        )
        chosen: list[Snippet] = []
        for score, window in scored:
            if score <= 0 or len(chosen) == MAX_PER_DOCUMENT:
                break
            snippet = Snippet(
                OPEN_DOCUMENT,
                document.uri,
                window.start_line,
                window.end_line,
                "\n".join(lines[window.start_line : window.end_line + 1]),
                score,
            )
            if not any(snippet.overlaps(other) for other in chosen):
                chosen.append(snippet)
        found += chosen
    return found


def recent_edit_candidates(
    query: frozenset[str],
    regions: Iterable[tuple[str, int, int]],
    sources: dict[str, str],
    imported: frozenset[str] = frozenset(),
) -> list[Snippet]:
    """Each recent region with its margin; a longer one by its window most like the query (a
    function just written is called by the name in its first line, not its last)."""
    found: list[Snippet] = []
    lines_of: dict[str, list[str]] = {}
    for uri, first, last in regions:
        if uri not in sources:
            continue
        lines = lines_of.get(uri)
        if lines is None:
            lines = lines_of[uri] = sources[uri].split("\n")
        low = max(0, first - EDIT_MARGIN_LINES)
        high = min(len(lines) - 1, last + EDIT_MARGIN_LINES)
        best: Snippet | None = None
        for start in range(low, max(low, high - WINDOW_LINES + 1) + 1, WINDOW_STEP):
            end = min(high, start + WINDOW_LINES - 1)
            text = "\n".join(lines[start : end + 1])
            score = _score(query, identifiers(text), defined_names(text), imported)
            if score > 0 and (best is None or score > best.score):
                best = Snippet(RECENT_EDIT, uri, start, end, text, score)
        if best is not None:
            found.append(best)
    return found


def select_snippets(candidates: Iterable[Snippet], budget_chars: int) -> list[Snippet]:
    """The best candidates that fit `budget_chars`, best first, none overlapping another (on a
    tie a recent edit goes before a window of an open document)."""
    ranked = sorted(candidates, key=lambda s: (-s.score, s.kind != RECENT_EDIT))
    chosen: list[Snippet] = []
    left = budget_chars
    for snippet in ranked:
        if len(chosen) == MAX_SNIPPETS:
            break
        if len(snippet.text) > left or any(snippet.overlaps(other) for other in chosen):
            continue
        chosen.append(snippet)
        left -= len(snippet.text)
    return chosen


def choose_snippets(
    prefix: str,
    current_uri: str,
    sent_lines: tuple[int, int],
    documents: Sequence[OpenDocument],
    recent: RecentEdits | None,
    cache: WindowCache | None,
    budget_chars: int,
) -> list[Snippet]:
    """The snippets for a request at the end of `prefix` in `current_uri`, whose lines
    `sent_lines` (zero-based, inclusive) go to serving anyway. `recent` / `cache` None: that
    source is off."""
    query = query_identifiers(prefix)
    if not query or budget_chars <= 0:
        return []
    current = next((d.source for d in documents if d.uri == current_uri), prefix)
    imported = imported_names(current[:IMPORTS_CHARS])
    candidates: list[Snippet] = []
    if cache is not None:
        others = [
            d for d in documents if d.uri != current_uri and len(d.source) <= MAX_DOCUMENT_CHARS
        ]
        candidates += open_document_candidates(query, others, cache, imported)
    if recent is not None:
        first, last = sent_lines
        regions = [
            r for r in recent.regions() if r[0] != current_uri or r[2] < first or r[1] > last
        ]
        sources = {d.uri: d.source for d in documents}
        candidates += recent_edit_candidates(query, regions, sources, imported)
    return select_snippets(candidates, budget_chars)
