"""The test runner: isolated copies of the workspace, timeouts, output caps, parallel runs, and
the validation that ranks candidates whose tests pass first."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from lsp_server.repair.test_runner import TestCommandError, TestLimits, TestRunner, reap
from lsp_server.repair.validation import TestValidation
from quill.v1 import quill_pb2 as pb

BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\nassert add(2, 3) == 5, f'add(2, 3) is {add(2, 3)}'\nprint('ok')\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "calc.py").write_text(BUGGY)
    (root / "test_calc.py").write_text(TEST)
    (root / ".git").mkdir()
    (root / ".git" / "big").write_text("not copied")
    return root


def runner(root: Path, command: str, **limits: float) -> TestRunner:
    return TestRunner(command, root, "calc.py", TestLimits(**limits))  # type: ignore[arg-type]


def test_each_run_uses_a_copy_and_never_touches_the_users_files(workspace: Path) -> None:
    # The command also writes into its folder: the copy, not the workspace.
    test = runner(workspace, f"echo ran > log.txt && ls -a > files.txt && {sys.executable} "
                  "test_calc.py")  # fmt: skip
    fixed = BUGGY.replace("a - b", "a + b")
    failing, passing = asyncio.run(test.run_all([BUGGY, fixed]))
    assert (failing.outcome, failing.exit_code) == ("fail", 1)
    assert "add(2, 3) is -1" in failing.output
    assert passing.outcome == "pass" and "ok" in passing.output
    assert (workspace / "calc.py").read_text() == BUGGY
    assert not (workspace / "log.txt").exists()


def test_a_hanging_command_is_killed_at_its_timeout_with_its_children(workspace: Path) -> None:
    test = runner(workspace, "sleep 30 & sleep 30; wait", timeout_s=0.5)
    started = time.perf_counter()
    run = asyncio.run(test.run(BUGGY))
    assert run.outcome == "timeout" and run.exit_code is None
    assert time.perf_counter() - started < 10
    assert test.describe(run) == "the test command did not finish within 0.5 s"


def test_a_command_that_floods_its_output_is_stopped(workspace: Path) -> None:
    test = runner(workspace, "yes quill", max_output_bytes=100_000, timeout_s=30)
    run = asyncio.run(test.run(BUGGY))
    assert run.outcome == "flood"
    assert test.describe(run) == "the test command printed more than 100000 bytes"
    # The kept tail is the command's own output (a read may end mid-line).
    assert "quill\nquill\n" in run.output and set(run.output) <= set("quil\n")


def test_a_killed_run_whose_output_nobody_read_is_reaped() -> None:
    """A flood leaves the output buffer full and reading paused; asyncio's wait() alone then
    never returns, since it also waits for the pipe to close (the unit suite hung here)."""

    async def flood_then_kill() -> int | None:
        process = await asyncio.create_subprocess_shell(
            "yes quill", stdout=asyncio.subprocess.PIPE, start_new_session=True
        )
        await asyncio.sleep(0.5)  # nobody reads: the buffer passes its limit, reading pauses
        os.killpg(process.pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            await reap(process)
        return process.returncode

    assert asyncio.run(flood_then_kill()) == -signal.SIGKILL


def test_a_command_that_cannot_start_says_so(workspace: Path) -> None:
    test = runner(workspace, "no-such-test-command-xyz --fast")
    run = asyncio.run(test.run(BUGGY))
    assert run.outcome == "error" and run.exit_code == 127
    assert test.describe(run).startswith("the test command could not run (")
    assert "not found" in test.describe(run)


def test_runs_go_on_in_parallel(workspace: Path, tmp_path: Path) -> None:
    shared = tmp_path / "alive"
    shared.mkdir()
    # Passes only while another run is alive at the same time.
    wait_for_other = (
        f"touch {shared}/$$; for i in $(seq 100); do "
        f'[ "$(ls {shared} | wc -l)" -ge 2 ] && exit 0; sleep 0.05; done; exit 1'
    )
    test = runner(workspace, wait_for_other, parallel=2)
    runs = asyncio.run(test.run_all([BUGGY, BUGGY]))
    assert [run.outcome for run in runs] == ["pass", "pass"]


def test_bad_commands_and_too_large_workspaces_are_refused(workspace: Path) -> None:
    with pytest.raises(TestCommandError, match="empty"):
        runner(workspace, "  ")
    with pytest.raises(TestCommandError, match="outside the workspace"):
        TestRunner("true", workspace, "../elsewhere.py")
    test = runner(workspace, "true", max_workspace_files=1)
    with pytest.raises(TestCommandError, match="too large"):
        asyncio.run(test.run(BUGGY))


def test_a_workspace_that_cannot_be_copied_is_a_clear_error(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file the user cannot read (tests run as root here, who reads anything).
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(workspace / "secret.txt"))

    monkeypatch.setattr("lsp_server.repair.test_runner.shutil.copytree", refuse)
    with pytest.raises(TestCommandError, match="could not copy the workspace: .*Permission"):
        asyncio.run(runner(workspace, "true").run(BUGGY))


def test_validation_ranks_a_passing_candidate_first_and_feeds_the_failure_as_hint(
    workspace: Path,
) -> None:
    validation = TestValidation(runner(workspace, f"{sys.executable} test_calc.py"))
    wrong = pb.RepairCandidate(patch="    return a * b", score=-0.1, parses=True,
                               names_resolve=True)  # fmt: skip
    right = pb.RepairCandidate(patch="    return a + b", score=-0.9, parses=True,
                               names_resolve=True)  # fmt: skip

    async def scenario() -> None:
        await validation.run_original(BUGGY)
        await validation.run_candidates(BUGGY, 1, 1, [wrong, right])

    asyncio.run(scenario())
    assert validation.active and "add(2, 3) is -1" in validation.hint
    assert [c.patch for c in validation.ranked([wrong, right])] == [right.patch, wrong.patch]
    assert validation.passed(right) is True and validation.passed(wrong) is False
    assert validation.summary() == "tests pass on 1 of 2 candidate(s)"


def test_validation_is_off_when_the_original_passes_or_hangs(workspace: Path) -> None:
    passing = TestValidation(runner(workspace, "true"))
    hanging = TestValidation(runner(workspace, "sleep 30", timeout_s=0.3))

    async def scenario() -> None:
        await passing.run_original(BUGGY)
        await hanging.run_original(BUGGY)
        candidate = pb.RepairCandidate(patch="    return a + b", parses=True)
        await hanging.run_candidates(BUGGY, 1, 1, [candidate])
        assert hanging.runs == {}

    asyncio.run(scenario())
    assert not passing.active and "pass on the original" in passing.summary()
    assert not hanging.active
    assert hanging.summary() == (
        "candidates were not tested: the test command did not finish within 0.3 s"
    )
