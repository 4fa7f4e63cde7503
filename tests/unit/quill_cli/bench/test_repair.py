"""The repair benchmark's planted bugs: deterministic, one line changed, tests fail."""

from __future__ import annotations

from quill_cli.bench.quality import default_data_dir, program_passes
from quill_cli.bench.repair import _same_code
from quill_cli.bench.repair_bugs import KINDS, make_bugs


def _fails(bug) -> bool:  # type: ignore[no-untyped-def]
    return not program_passes(bug.program(bug.text))


def test_planted_bugs_are_deterministic_single_line_and_fail_their_tests() -> None:
    bugs = make_bugs(default_data_dir(), len(KINDS), seed=3, fails_tests=_fails)
    again = make_bugs(default_data_dir(), len(KINDS), seed=3, fails_tests=_fails)
    assert [b.kind for b in bugs] == list(KINDS)
    assert len({b.task_id.rsplit("/", 1)[0] for b in bugs}) == len(bugs)  # one per problem
    for bug in bugs:
        original = bug.with_line(bug.original_line)
        pairs = zip(bug.text.split("\n"), original.split("\n"), strict=True)
        changed = [i for i, (a, b) in enumerate(pairs) if a != b]
        assert changed == [bug.line]
        assert program_passes(bug.program(original))
    # Same seed, same bugs.
    assert [(b.task_id, b.buggy_line) for b in bugs] == [
        (b.task_id, b.buggy_line) for b in again[: len(bugs)]
    ]


def test_a_fix_is_the_original_line_token_by_token() -> None:
    assert _same_code("    return  a+b  # sum", "        return a + b")
    assert not _same_code("    return a - b", "    return a + b")
    assert not _same_code("    return (a", "    return a")
