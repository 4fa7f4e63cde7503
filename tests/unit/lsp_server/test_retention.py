"""The retention measure and its schedule: accepted text followed through edits that keep,
change and delete it, checked on an injected clock."""

from __future__ import annotations

import random

import pytest

from lsp_server.edits import change_span, follow
from lsp_server.retention import RetentionTracker, retained_chars, retention_event
from quill.v1 import quill_pb2 as pb

URI = "file:///work/a.py"
OTHER = "file:///work/b.py"
FRESH = pb.SUGGESTION_ORIGIN_FRESH


def lcs_reference(a: str, b: str) -> int:
    """The textbook dynamic programme."""
    row = [0] * (len(b) + 1)
    for char in a:
        previous_diagonal = 0
        for j, other in enumerate(b, start=1):
            saved = row[j]
            row[j] = previous_diagonal + 1 if char == other else max(row[j], row[j - 1])
            previous_diagonal = saved
    return row[-1]


@pytest.mark.parametrize(
    ("accepted", "current", "expected"),
    [
        ("return a + b", "return a + b", 12),  # kept
        ("return a + b", "", 0),  # deleted
        ("return a + b", "return a - b", 11),  # one character changed
        ("return a + b", "return (a + b) * 2", 12),  # typed inside: costs nothing
        ("return a + b", "return b", 8),  # part deleted
        ("abc", "xyz", 0),
    ],
)
def test_retained_chars_examples(accepted: str, current: str, expected: int) -> None:
    assert retained_chars(accepted, current) == expected


def test_retained_chars_is_the_longest_common_subsequence() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a = "".join(rng.choice("ab c\n(") for _ in range(rng.randrange(0, 80)))
        b = "".join(rng.choice("ab c\nx") for _ in range(rng.randrange(0, 80)))
        assert retained_chars(a, b) == lcs_reference(a, b), (a, b)


def test_change_span_finds_the_changed_span() -> None:
    assert change_span("abc", "abc") is None
    span = change_span("hello world", "hello big world")
    assert span is not None and (span.start, span.old_end, span.new_end) == (6, 6, 10)
    span = change_span("x" * 10_000 + "y" + "z" * 10_000, "x" * 10_000 + "z" * 10_000)
    assert span is not None and (span.start, span.old_end, span.new_end) == (10_000, 10_001, 10_000)
    rng = random.Random(3)
    for _ in range(200):
        old = "".join(rng.choice("ab\n") for _ in range(rng.randrange(0, 9000)))
        start = rng.randrange(0, len(old) + 1)
        end = rng.randrange(start, len(old) + 1)
        new = (
            old[:start] + "".join(rng.choice("abc") for _ in range(rng.randrange(0, 5))) + old[end:]
        )
        span = change_span(old, new)
        if span is None:
            assert old == new
            continue
        assert old[: span.start] == new[: span.start]
        assert old[span.old_end :] == new[span.new_end :]
        assert span.old_end - span.start <= end - start  # never more than what changed


def test_follow_moves_keeps_and_absorbs() -> None:
    # Range [10, 20) of the old text.
    assert follow(10, 20, change_span("a" * 30, "b" + "a" * 30)) == (11, 21)  # before: moves
    insert_after = change_span("x" * 30, "x" * 25 + "yy" + "x" * 5)
    assert insert_after is not None and follow(10, 20, insert_after) == (10, 20)
    inside = change_span("0123456789abcdefghijklmnop", "0123456789abcXXdefghijklmnop")
    assert inside is not None and follow(10, 20, inside) == (10, 22)
    at_end = change_span("0123456789abcdefghij", "0123456789abcdefghij;")
    assert at_end is not None and follow(10, 20, at_end) == (10, 20)  # typed after: outside
    overlap = change_span("0123456789abcdefghijKLMN", "012345678!ghijKLMN")
    assert overlap is not None and follow(10, 20, overlap) == (9, 14)  # "!ghij" is what is left


def accept(
    tracker: RetentionTracker, text: str, document: str, offset: int, sid: str = "s1"
) -> None:
    tracker.offered(sid, URI, offset, text, FRESH)
    tracker.accepted(sid, len(text), lambda uri: document if uri == URI else None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


PREFIX = "def add(a, b):\n    "
SUGGESTION = "return a + b"
AFTER = "\n\nprint(add(1, 2))\n"


def test_kept_text_is_fully_retained_at_every_check(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30, 120, 600))
    document = PREFIX + SUGGESTION + AFTER
    accept(tracker, SUGGESTION, document, len(PREFIX))
    assert tracker.next_due() == 130.0
    clock.now = 129.9
    assert tracker.due() == []
    # Edits elsewhere, before and after the suggestion, move it but keep it.
    document = "import math\n" + document + "x = 1\n"
    tracker.document_changed(URI, document)
    clock.now = 130.0
    (check,) = tracker.due()
    assert (check.suggestion_id, check.after_s, check.retained, check.accepted) == (
        "s1", 30, 12, 12
    )  # fmt: skip
    clock.now = 1000.0
    assert [(c.after_s, c.retained) for c in tracker.due()] == [(120, 12), (600, 12)]
    assert tracker.next_due() is None and tracker.due() == []


def test_changed_text_counts_the_characters_kept(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30, 120))
    document = PREFIX + SUGGESTION + AFTER
    accept(tracker, SUGGESTION, document, len(PREFIX))
    # "a + b" becomes "a - b" (one replaced) and "(c)" is typed inside (costs nothing).
    start = len(PREFIX)
    changed = PREFIX + "return a - b" + AFTER
    tracker.document_changed(URI, changed)
    changed = PREFIX + "return a - b(c)" + AFTER
    tracker.document_changed(URI, changed)
    clock.now += 30
    (check,) = tracker.due()
    assert check.retained == 11
    # Typing right after the suggestion stays outside it.
    tracker.document_changed(URI, changed[: start + 15] + "  # done" + changed[start + 15 :])
    clock.now += 90
    (check,) = tracker.due()
    assert check.retained == 11


def test_deleted_text_is_not_retained(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30, 120))
    document = PREFIX + SUGGESTION + AFTER
    accept(tracker, SUGGESTION, document, len(PREFIX))
    tracker.document_changed(URI, PREFIX + "return b" + AFTER)  # "a + " deleted
    clock.now += 30
    assert [c.retained for c in tracker.due()] == [8]
    # The whole line deleted, then other code written in its place.
    tracker.document_changed(URI, PREFIX + AFTER)
    tracker.document_changed(URI, PREFIX + "pass" + AFTER)
    clock.now += 90
    assert [c.retained for c in tracker.due()] == [0]


def test_closing_the_document_reports_every_remaining_check_with_what_was_known(
    clock: Clock,
) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30, 120, 600))
    document = PREFIX + SUGGESTION + AFTER
    accept(tracker, SUGGESTION, document, len(PREFIX))
    tracker.document_changed(URI, PREFIX + "return a" + AFTER)
    clock.now += 30
    assert [(c.after_s, c.retained) for c in tracker.due()] == [(30, 8)]
    checks = tracker.closed(URI)
    assert [(c.after_s, c.retained) for c in checks] == [(120, 8), (600, 8)]
    assert tracker.next_due() is None
    clock.now += 1000
    assert tracker.due() == []


def test_shutdown_reports_what_is_left_of_every_document(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30,))
    accept(tracker, SUGGESTION, PREFIX + SUGGESTION + AFTER, len(PREFIX), sid="s1")
    tracker.offered("s2", OTHER, 0, "x = 1", FRESH)
    tracker.accepted("s2", None, lambda uri: "x = 1\n")
    checks = tracker.finish()
    assert sorted((c.suggestion_id, c.retained) for c in checks) == [("s1", 12), ("s2", 5)]
    event = retention_event(checks[0])
    assert event.kind == pb.SUGGESTION_EVENT_KIND_RETAINED and event.retained_after_s == 30
    assert event.origin == FRESH and event.chars == checks[0].retained


def test_an_accept_before_the_editor_inserted_the_text_waits_for_it(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30,))
    before = PREFIX + AFTER
    accept(tracker, SUGGESTION, before, len(PREFIX))  # the command came first
    tracker.document_changed(URI, PREFIX + SUGGESTION + AFTER)  # then the editor's change
    clock.now += 30
    assert [c.retained for c in tracker.due()] == [12]


def test_text_never_inserted_is_not_retained(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30,))
    accept(tracker, SUGGESTION, PREFIX + AFTER, len(PREFIX))
    tracker.document_changed(URI, PREFIX + "pass" + AFTER)
    clock.now += 30
    assert [c.retained for c in tracker.due()] == [0]


def test_partial_accepts_grow_what_is_followed(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30,))
    tracker.offered("s1", URI, len(PREFIX), SUGGESTION, FRESH)
    document = PREFIX + "return" + AFTER
    tracker.accepted("s1", 6, lambda uri: document)  # "return"
    document = PREFIX + "return a" + AFTER
    tracker.document_changed(URI, document)
    tracker.accepted("s1", 8, lambda uri: document)  # " a"
    clock.now += 30
    (check,) = tracker.due()
    assert (check.retained, check.accepted) == (8, 8)


def test_the_rest_after_type_ahead_joins_the_accepted_beginning(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=(30,))
    start = len(PREFIX)
    tracker.offered("s1", URI, start, SUGGESTION, FRESH)
    document = PREFIX + "return " + AFTER
    tracker.accepted("s1", 7, lambda uri: document)  # a word accepted
    tracker.offered("s1", URI, start + 7, "a + b", pb.SUGGESTION_ORIGIN_TYPE_AHEAD)
    document = PREFIX + SUGGESTION + AFTER
    tracker.document_changed(URI, document)
    tracker.accepted("s1", 5, lambda uri: document)
    clock.now += 30
    (check,) = tracker.due()
    assert (check.retained, check.accepted) == (12, 12)


def test_nothing_is_followed_when_checks_are_off_or_the_document_is_closed(clock: Clock) -> None:
    tracker = RetentionTracker(clock=clock, checks_s=())
    accept(tracker, SUGGESTION, PREFIX + SUGGESTION, len(PREFIX))
    assert tracker.next_due() is None
    tracker = RetentionTracker(clock=clock, checks_s=(30,))
    tracker.offered("s1", URI, 0, SUGGESTION, FRESH)
    tracker.accepted("s1", None, lambda uri: None)
    tracker.accepted("unknown", None, lambda uri: "x")
    assert tracker.next_due() is None
