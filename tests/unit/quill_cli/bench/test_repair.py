"""The repair benchmark's planted bugs: deterministic, one line changed, tests fail."""

from __future__ import annotations

import asyncio
from pathlib import Path

from quill.v1 import quill_pb2 as pb
from quill_cli.bench.quality import default_data_dir, program_passes
from quill_cli.bench.repair import _same_code, _Settings, _validation
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


def test_validation_workspace_runs_the_tasks_tests(tmp_path: Path) -> None:
    [bug] = make_bugs(default_data_dir(), 1, seed=3, fails_tests=_fails)
    validation = _validation(bug, tmp_path, _Settings(4, 2.0, 30.0))
    fixed = pb.RepairCandidate(patch=bug.original_line, parses=True)

    async def scenario() -> None:
        await validation.run_original(bug.text)
        await validation.run_candidates(bug.text, bug.line, bug.line, [fixed])

    asyncio.run(scenario())
    # The buggy file fails the task's own tests (not an import error); the original line passes.
    assert validation.active and "Error" in validation.hint
    assert "ModuleNotFoundError" not in validation.hint
    assert validation.passed(fixed) is True
