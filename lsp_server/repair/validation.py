"""Tests pick the fix: the original file's failing output becomes the repair's hint, and each
candidate runs the tests; candidates whose tests pass rank first.

Used by the language server's repair command (and so `quill repair --test`) and by the repair
benchmark, so both validate the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lsp_server.repair.client import candidate_rank, place_patch
from lsp_server.repair.test_runner import TestCommandError, TestRun, TestRunner, failure_hint
from quill.v1 import quill_pb2 as pb


@dataclass
class TestValidation:
    __test__ = False  # not a pytest test class

    runner: TestRunner
    original: TestRun | None = None
    # Why candidates are not tested ("" when they are).
    note: str = ""
    # The original's failing output, for the model.
    hint: str = ""
    runs: dict[str, TestRun] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.original is not None and not self.note

    async def run_original(self, text: str) -> None:
        try:
            self.original = await self.runner.run(text)
        except TestCommandError as error:
            self.note = str(error)
            return
        self.note = self.runner.describe(self.original)
        if not self.note:
            self.hint = failure_hint(self.original)

    async def run_candidates(
        self, text: str, start_line: int, end_line: int, candidates: Sequence[pb.RepairCandidate]
    ) -> None:
        """Test every candidate (not the ones tested already); a no-op when not active."""
        if not self.active:
            return
        lines = text.split("\n")
        todo = [c.patch for c in candidates if c.patch not in self.runs]
        texts = [place_patch(lines, start_line, end_line, patch)[0] for patch in todo]
        try:
            runs = await self.runner.run_all(texts)
        except TestCommandError as error:
            self.note = str(error)
            return
        self.runs.update(zip(todo, runs, strict=True))

    def passed(self, candidate: pb.RepairCandidate) -> bool | None:
        """True/False once tested, None when not tested."""
        run = self.runs.get(candidate.patch)
        return None if run is None else run.passed

    def ranked(self, candidates: Sequence[pb.RepairCandidate]) -> list[pb.RepairCandidate]:
        """Candidates whose tests pass first, then the usual order (valid, parses, score)."""
        return sorted(
            candidates,
            key=lambda c: (self.passed(c) is True, *candidate_rank(c)),
            reverse=True,
        )

    def summary(self) -> str:
        if self.note:
            return f"candidates were not tested: {self.note}"
        passing = sum(run.passed for run in self.runs.values())
        timeouts = sum(run.outcome == "timeout" for run in self.runs.values())
        text = f"tests pass on {passing} of {len(self.runs)} candidate(s)"
        if timeouts:
            text += f" ({timeouts} timed out after {self.runner.limits.timeout_s:g} s)"
        return text
