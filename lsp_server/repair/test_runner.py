"""Runs the user's test command on candidate patches, each in an isolated copy of the workspace.

The user's files are never touched: every run copies the workspace into a temporary folder (the
virtual environment is linked, not copied; `.git` and caches are left out), writes the file with
the patch in place there and runs the command in that folder, in a process group of its own. A
run has a timeout and an output cap; one that exceeds either is killed with its children. Runs
go on in parallel within the machine's cores.

The original file is run first: its failing output is what the model is shown (the repair's
hint), and when the command cannot tell a broken file from a fixed one (it passes, hangs, floods
its output or cannot start) candidates are not tested and the user is told why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Outcome = Literal["pass", "fail", "timeout", "flood", "error"]

# Linked into the copy rather than copied: large, and tests only read them.
_LINKED = frozenset({".venv", "venv", "node_modules"})
# Left out of the copy.
_SKIPPED = frozenset({".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache",
                      ".ruff_cache", ".tox", ".nox"})  # fmt: skip
_TAIL_BYTES = 16_000
# Exit codes of a shell whose command was not found or not executable.
_CANNOT_RUN = frozenset({126, 127})
# Seconds a run's end is waited for once it is over or killed (tests/unit: reap).
_REAP_S = 5.0


class TestCommandError(RuntimeError):
    """The test command cannot validate candidates; the message is meant for the user."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest test class

    outcome: Outcome
    exit_code: int | None
    # The end of what the command printed (stdout and stderr), decoded leniently.
    output: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


@dataclass(frozen=True)
class TestLimits:
    __test__ = False  # not a pytest test class

    timeout_s: float = 60.0
    max_output_bytes: int = 2_000_000
    # Runs at once; 0: one per core.
    parallel: int = 0
    max_workspace_bytes: int = 500_000_000
    max_workspace_files: int = 20_000


class TestRunner:
    """`command` (a shell command line) run in copies of `root` with `relative_path` replaced."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, command: str, root: Path, relative_path: str, limits: TestLimits | None = None
    ) -> None:
        if not command.strip():
            raise TestCommandError("the test command is empty")
        self.command = command
        self.root = root
        self.relative_path = relative_path
        self.limits = limits or TestLimits()
        parallel = self.limits.parallel or (os.cpu_count() or 1)
        self._slots = asyncio.Semaphore(max(parallel, 1))
        target = (root / relative_path).resolve()
        if not target.is_relative_to(root.resolve()):
            raise TestCommandError(f"{relative_path} is outside the workspace {root}")

    def describe(self, run: TestRun) -> str:
        """Why a run of the original file makes the command useless for validation, or ""."""
        limits = self.limits
        if run.outcome == "timeout":
            return f"the test command did not finish within {limits.timeout_s:g} s"
        if run.outcome == "flood":
            return f"the test command printed more than {limits.max_output_bytes} bytes"
        if run.outcome == "error":
            last = run.output.strip().splitlines()[-1:] or [f"exit status {run.exit_code}"]
            return f"the test command could not run ({last[0][:200]})"
        if run.outcome == "pass":
            return "the tests pass on the original code, so they cannot tell a fix apart"
        return ""

    async def run_all(self, texts: Sequence[str]) -> list[TestRun]:
        """The command on each text (the file's new content), in parallel within the slots."""
        return list(await asyncio.gather(*(self.run(text) for text in texts)))

    async def run(self, text: str) -> TestRun:
        async with self._slots:
            with tempfile.TemporaryDirectory(prefix="quill-repair-test-") as folder:
                copy = Path(folder) / "workspace"
                try:
                    await asyncio.to_thread(self._copy_workspace, copy, text)
                except (OSError, shutil.Error) as error:
                    raise TestCommandError(f"could not copy the workspace: {error}") from error
                return await self._execute(copy)

    def _copy_workspace(self, copy: Path, text: str) -> None:
        self._check_size()

        def ignore(directory: str, names: list[str]) -> set[str]:
            return {name for name in names if name in _SKIPPED or name in _LINKED}

        shutil.copytree(self.root, copy, symlinks=True, ignore=ignore)
        for name in _LINKED:
            if (self.root / name).is_dir():
                (copy / name).symlink_to(self.root / name, target_is_directory=True)
        target = copy / self.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def _check_size(self) -> None:
        files = size = 0
        for directory, folders, names in os.walk(self.root):
            folders[:] = [f for f in folders if f not in _SKIPPED and f not in _LINKED]
            files += len(names)
            for name in names:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(directory, name)).st_size
            if files > self.limits.max_workspace_files or size > self.limits.max_workspace_bytes:
                raise TestCommandError(
                    f"the workspace is too large to copy for each test run (over "
                    f"{self.limits.max_workspace_files} files or "
                    f"{self.limits.max_workspace_bytes // 1_000_000} MB)"
                )

    async def _execute(self, folder: Path) -> TestRun:
        started = time.perf_counter()
        environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        process = await asyncio.create_subprocess_shell(
            self.command,
            cwd=folder,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with its children
            env=environment,
        )
        tail = bytearray()
        outcome: Outcome | None = None
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                outcome = await self._read(process, tail)
                if outcome is None:
                    await process.wait()
        except TimeoutError:
            outcome = "timeout"
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
            await reap(process)
        if outcome is None:
            code = process.returncode
            outcome = "pass" if code == 0 else ("error" if code in _CANNOT_RUN else "fail")
        return TestRun(
            outcome,
            process.returncode if outcome in ("pass", "fail", "error") else None,
            tail.decode("utf-8", "replace"),
            time.perf_counter() - started,
        )

    async def _read(self, process: asyncio.subprocess.Process, tail: bytearray) -> Outcome | None:
        """Read the output to its end, keeping the tail; "flood" when it exceeds the cap."""
        assert process.stdout is not None
        total = 0
        while chunk := await process.stdout.read(65536):
            total += len(chunk)
            tail.extend(chunk)
            del tail[:-_TAIL_BYTES]
            if total > self.limits.max_output_bytes:
                return "flood"
        return None


async def reap(process: asyncio.subprocess.Process, within_s: float = _REAP_S) -> None:
    """Wait for a run that ended or was killed. asyncio's wait() also waits for the output pipe
    to close, which it cannot see while reading is paused because the buffer is full (a flood
    leaves it so): the repair would hang. So the rest of the output is read and dropped first,
    and neither waits longer than `within_s` (a grandchild that left the process group may hold
    the pipe open)."""
    assert process.stdout is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            while await process.stdout.read(65536):
                pass
            await process.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def failure_hint(run: TestRun, max_lines: int = 40) -> str:
    """The end of a failing run's output, for the model's prompt."""
    lines = [line for line in run.output.splitlines() if line.strip()]
    return "\n".join(lines[-max_lines:])
