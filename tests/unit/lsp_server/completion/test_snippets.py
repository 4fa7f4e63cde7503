"""Choosing the editor's own context: open documents' windows and recently edited regions, the
most similar to the code at the cursor, within the budget, without overlaps."""

from __future__ import annotations

from lsp_server.completion.snippets import (
    OPEN_DOCUMENT,
    RECENT_EDIT,
    WINDOW_LINES,
    OpenDocument,
    RecentEdits,
    Snippet,
    WindowCache,
    choose_snippets,
    defined_names,
    identifiers,
    imported_names,
    jaccard,
    select_snippets,
)

CURRENT = "file:///w/main.py"
BILLING = "file:///w/billing.py"
NOISE = "file:///w/noise.py"


def _filler(name: str, count: int) -> list[str]:
    return [f"{name}_{i} = {i}" for i in range(count)]


BILLING_LINES = [
    *_filler("unrelated", 40),
    "def compute_invoice_total(items, tax_rate):",
    "    subtotal = sum(item.price for item in items)",
    "    return subtotal * (1 + tax_rate)",
    *_filler("more", 40),
]
NOISE_LINES = [f"def render_widget_{i}(canvas, colour):" for i in range(30)]
PREFIX = (
    "from billing import compute_invoice_total\n\n"
    "def checkout(items, tax_rate):\n"
    "    subtotal = sum(item.price for item in items)\n"
    "    total = "
)


def test_identifiers_and_jaccard() -> None:
    assert identifiers("def f(self, item_count): return item_count + x1") == {"item_count", "x1"}
    assert jaccard(frozenset({"a", "b"}), frozenset({"b", "c"})) == 1 / 3
    assert jaccard(frozenset(), frozenset({"a"})) == 0.0


def test_the_most_similar_window_of_another_open_document_is_chosen() -> None:
    documents = [
        OpenDocument(CURRENT, PREFIX),
        OpenDocument(BILLING, "\n".join(BILLING_LINES)),
        OpenDocument(NOISE, "\n".join(NOISE_LINES)),
    ]
    cache = WindowCache()
    chosen = choose_snippets(PREFIX, CURRENT, (0, 4), documents, None, cache, 4000)
    assert chosen, "the billing window shares identifiers with the cursor's code"
    best = chosen[0]
    assert (best.kind, best.uri) == (OPEN_DOCUMENT, BILLING)
    assert "def compute_invoice_total(items, tax_rate):" in best.text
    assert best.end_line - best.start_line + 1 <= WINDOW_LINES
    assert all(s.uri != CURRENT for s in chosen)  # the document itself is in the prompt
    assert all(s.uri != NOISE for s in chosen)  # nothing in common with the cursor's code
    # Windows are computed once per document text.
    lines, windows = cache.windows(documents[1])
    assert cache.windows(documents[1])[1] is windows
    assert cache.windows(OpenDocument(BILLING, "x = 1"))[1] is not windows
    # A change that came without a new version (clients do that) is not served stale windows.
    changed = cache.windows(OpenDocument(BILLING, "y = 2"))[0]
    assert changed == ["y = 2"]


def test_recent_edits_follow_the_document_and_merge() -> None:
    edits = RecentEdits(capacity=3)
    text = "\n".join(f"line {i}" for i in range(50))
    edits.opened(BILLING, text)
    # Line 10 changed, then two lines inserted above it: the region moves down.
    text = text.replace("line 10", "line ten")
    edits.changed(BILLING, text)
    assert edits.regions() == [(BILLING, 10, 10)]
    text = "new a\nnew b\n" + text
    edits.changed(BILLING, text)
    assert edits.regions() == [(BILLING, 0, 1), (BILLING, 12, 12)]
    # An edit next to the moved region joins it.
    text = text.replace("line 11", "line eleven")
    edits.changed(BILLING, text)
    assert edits.regions() == [(BILLING, 12, 13), (BILLING, 0, 1)]
    # An edit deleting lines above a region moves it up; a closed document's regions go.
    lines = text.split("\n")
    text = "\n".join(lines[:30] + lines[35:])
    edits.changed(BILLING, text)
    assert edits.regions()[1:] == [(BILLING, 12, 13), (BILLING, 0, 1)]
    edits.opened(NOISE, "a\nb")
    edits.changed(NOISE, "a\nb\nc")
    assert len(edits.regions()) == 3 and edits.regions()[0][0] == NOISE  # the oldest went
    edits.closed(BILLING)
    assert [r[0] for r in edits.regions()] == [NOISE]


def test_a_recent_edit_is_offered_with_its_margin() -> None:
    before = "\n".join(BILLING_LINES[:40] + BILLING_LINES[43:])
    after = "\n".join(BILLING_LINES)  # the user just wrote compute_invoice_total
    edits = RecentEdits()
    edits.opened(BILLING, before)
    edits.changed(BILLING, after)
    documents = [OpenDocument(CURRENT, PREFIX), OpenDocument(BILLING, after)]
    chosen = choose_snippets(PREFIX, CURRENT, (0, 4), documents, edits, None, 4000)
    assert [(s.kind, s.uri, s.start_line, s.end_line) for s in chosen] == [
        (RECENT_EDIT, BILLING, 37, 45)
    ]
    assert chosen[0].text.split("\n")[3] == "def compute_invoice_total(items, tax_rate):"
    # Edits of the document itself count only outside the lines the prompt has anyway.
    edits.opened(CURRENT, "x = 1\n" + PREFIX)
    edits.changed(CURRENT, "x = 2\n" + PREFIX)
    chosen = choose_snippets(PREFIX, CURRENT, (0, 5), documents, edits, None, 4000)
    assert all(s.uri != CURRENT for s in chosen)


def _snippet(kind: str, uri: str, lines: tuple[int, int], size: int, score: float) -> Snippet:
    return Snippet(kind, uri, lines[0], lines[1], "x" * size, score)


def test_selection_is_best_first_within_the_budget_without_overlaps() -> None:
    candidates = [
        _snippet(OPEN_DOCUMENT, BILLING, (0, 19), 100, 0.5),
        _snippet(RECENT_EDIT, BILLING, (10, 15), 50, 0.5),  # same score, overlapping: wins
        _snippet(OPEN_DOCUMENT, NOISE, (0, 19), 300, 0.4),  # too large for what is left
        _snippet(OPEN_DOCUMENT, NOISE, (40, 59), 100, 0.1),
        _snippet(OPEN_DOCUMENT, CURRENT, (0, 19), 10, 0.0),
    ]
    chosen = select_snippets(candidates, budget_chars=200)
    assert [(s.kind, s.uri, s.start_line) for s in chosen] == [
        (RECENT_EDIT, BILLING, 10),
        (OPEN_DOCUMENT, NOISE, 40),
        (OPEN_DOCUMENT, CURRENT, 0),
    ]
    assert sum(len(s.text) for s in chosen) <= 200
    assert select_snippets(candidates, budget_chars=0) == []


def test_no_query_or_no_source_gives_nothing() -> None:
    documents = [OpenDocument(BILLING, "\n".join(BILLING_LINES))]
    assert choose_snippets("", CURRENT, (0, 0), documents, RecentEdits(), WindowCache(), 999) == []
    assert choose_snippets(PREFIX, CURRENT, (0, 4), documents, None, None, 999) == []


def test_import_statements_and_definitions_are_read_in_several_languages() -> None:
    python = "import os.path\nfrom .helpers import (\n    parse_header,\n    Reader as R,\n)\n"
    assert {"parse_header", "Reader", "os", "path"} <= imported_names(python)
    javascript = 'import { formatDate, parseDate } from "./dates";\nconst x = 1;\n'
    assert {"formatDate", "parseDate"} <= imported_names(javascript)
    assert "user" not in imported_names("user = load()\n")  # not a `use` statement
    source = (
        "class Reader:\n    def read(self): ...\nasync def fetch(url): ...\n"
        "export function go() {}\n"
    )
    assert defined_names(source) == {"Reader", "read", "fetch", "go"}


def test_a_window_defining_a_name_the_document_imports_wins_over_a_merely_similar_one() -> None:
    """The name the user is about to type is imported at the top but not in the lines before
    the cursor: similarity alone prefers a window that shares the cursor's words."""
    helpers = [
        *_filler("unrelated", 40),
        "def apply_discount(price, code):",
        "    return price * DISCOUNTS.get(code, 1.0)",
        *_filler("more", 40),
    ]
    similar = ["def checkout_total(items, tax_rate):", "    subtotal = 0", *_filler("z", 18)]
    prefix = (
        "from helpers import apply_discount\n\n"
        "def checkout(items, tax_rate, code):\n"
        "    subtotal = sum(item.price for item in items)\n"
        "    total = "
    )
    documents = [
        OpenDocument(CURRENT, prefix),
        OpenDocument("file:///w/helpers.py", "\n".join(helpers)),
        OpenDocument("file:///w/similar.py", "\n".join(similar)),
    ]
    chosen = choose_snippets(prefix, CURRENT, (0, 4), documents, None, WindowCache(), 4000)
    assert chosen[0].uri == "file:///w/helpers.py"  # best first
    assert "def apply_discount(price, code):" in chosen[0].text
    # Without the import, similarity decides.
    plain = prefix.replace("from helpers import apply_discount", "import math")
    documents[0] = OpenDocument(CURRENT, plain)
    chosen = choose_snippets(plain, CURRENT, (0, 4), documents, None, WindowCache(), 4000)
    assert chosen[0].uri == "file:///w/similar.py"
