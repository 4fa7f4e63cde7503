"""The repair prompt for a prefix-only model, and splicing a patch back into the file.

SmolLM2 has no fill-in-the-middle tokens, so the model writes the region after the code before
it. Three styles:
- "rewrite": the file up to the end of the top-level block holding the region (so the model sees
  the code after the bug too), then "# Fixed version of the code above", then the block again up
  to the region: the model copies the block and writes the region anew, usually as an edit;
- "hint": the file up to the region, the buggy lines as comments ("# buggy: ..."), "# fixed:";
- "regenerate": the file up to the region; the model writes the region afresh.
Measured in docs/benchmarks.md.
The failing test output, when given, goes in as comment lines just before the region.
The region's first-line indentation is part of the prompt (minus one space, so the model's first
token is the natural " word" token), and so part of every patch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PROMPT_STYLES = ("rewrite", "hint", "regenerate")
# How far "rewrite" looks for the end of the enclosing top-level block after the region.
_MAX_WINDOW_LINES_AFTER = 40
_MAX_FAILURE_LINES = 6
_MAX_FAILURE_LINE_CHARS = 160
# Characters per token no tokenizer exceeds on average: only the prompt's last
# budget * this many characters are encoded (a 1 MB file would stall the event loop).
_MAX_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class Region:
    """Whole lines start..end (zero-based, inclusive) of a file split at "\n".

    An insertion point (a missing statement after line N) is the empty region start=N+1, end=N:
    its original text is "", and a patch goes between lines N and N+1.
    """

    lines: tuple[str, ...]
    start: int
    end: int

    @classmethod
    def insertion_after(cls, lines: tuple[str, ...], line: int) -> Region:
        return cls(lines, line + 1, line)

    @property
    def is_insertion(self) -> bool:
        return self.end < self.start

    @property
    def original(self) -> str:
        return "\n".join(self.lines[self.start : self.end + 1])

    @property
    def line_count(self) -> int:
        """Lines a patch has: the region's, or one new line for an insertion."""
        return max(self.end - self.start + 1, 1)

    @property
    def indentation(self) -> str:
        if self.is_insertion:
            return self._insertion_indentation()
        return _indentation(self.lines[self.start])

    @property
    def opens_block(self) -> bool:
        """Whether the code after the region is indented deeper than the region: its last line
        opens a block (`for x in xs:`), and so must every patch's."""
        following = next(
            (line for line in self.lines[self.end + 1 :] if line.strip()[:1] not in ("", "#")),
            None,
        )
        return following is not None and len(_indentation(following)) > len(self.indentation)

    def splice(self, patch: str) -> str:
        """The file with the region replaced by `patch` (the protocol's rule for queries too)."""
        return "\n".join([*self.lines[: self.start], patch, *self.lines[self.end + 1 :]])

    def text_before(self) -> str:
        """The file up to the region (without the newline that ends the last line before it)."""
        return "\n".join(self.lines[: self.start])

    def _insertion_indentation(self) -> str:
        """The cursor line's indentation, or the next line's when that is deeper (the body of a
        block the cursor line opens)."""
        above = _indentation(self.lines[self.start - 1]) if self.start > 0 else ""
        below = next((_indentation(line) for line in self.lines[self.start :] if line.strip()), "")
        if len(below) > len(above):
            return below
        if self.start > 0 and self.lines[self.start - 1].rstrip().endswith(":"):
            return above + "    "
        return above


def _indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


@dataclass(frozen=True)
class RepairPrompt:
    token_ids: list[int]
    # Patch text that is already the end of the prompt (the first line's indentation).
    head: str


def build_prompt(
    region: Region,
    failing_test_output: str,
    style: str,
    encode: Callable[[str], list[int]],
    budget_tokens: int,
) -> RepairPrompt:
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown repair prompt style {style!r}; known: {PROMPT_STYLES}")
    indent = region.indentation
    head = indent[:-1] if indent.endswith(" ") else indent
    notes = [
        f"{indent}# error: {line.strip()[:_MAX_FAILURE_LINE_CHARS]}"
        for line in failing_test_output.strip().splitlines()[-_MAX_FAILURE_LINES:]
        if line.strip()
    ]
    before = list(region.lines[: region.start])
    if style == "rewrite":
        block_start, block_end = top_level_block(region, _MAX_WINDOW_LINES_AFTER)
        shown = region.lines[:block_end]
        title = f"# Fixed version of the code above ({_where(region)})"
        text = "\n".join(
            [*shown, "", "", title, *notes, *region.lines[block_start : region.start], head]
        )
        ids = encode(_tail(text, budget_tokens)) or encode("\n")
        return RepairPrompt(token_ids=ids[-budget_tokens:], head=head)
    if style == "hint":
        notes += [
            f"{indent}# buggy: {line.strip()}"
            for line in region.lines[region.start : region.end + 1]
        ]
        notes.append(f"{indent}# fixed:")
    text = "\n".join([*before, *notes, head])
    # An empty prompt (region at the top of the file, nothing before it) is not a prompt.
    ids = encode(_tail(text, budget_tokens)) or encode("\n")
    # Keep the end of the file: the code right before the region matters most.
    return RepairPrompt(token_ids=ids[-budget_tokens:], head=head)


def _tail(text: str, budget_tokens: int) -> str:
    """The end of `text` that holds more than `budget_tokens` tokens, from a line start."""
    start = len(text) - budget_tokens * _MAX_CHARS_PER_TOKEN
    if start <= 0:
        return text
    newline = text.find("\n", start)
    return text[newline + 1 :] if newline >= 0 else text[start:]


def _where(region: Region) -> str:
    if region.is_insertion:
        above = region.lines[region.start - 1].strip() if region.start > 0 else ""
        return f"a line is missing after `{above}`" if above else "a line is missing at the top"
    buggy = region.lines[region.start].strip()
    if region.line_count == 1:
        return f"the bug is in `{buggy}`"
    return f"the bug is in the {region.line_count} lines from `{buggy}`"


def top_level_block(region: Region, max_lines_after: int | None = None) -> tuple[int, int]:
    """Lines [start, end) of the top-level statement (def, class...) holding the region; at most
    `max_lines_after` lines past the region when given."""
    lines = region.lines
    # An insertion belongs to the block of the line it follows.
    start = max(region.start - 1, 0) if region.is_insertion else region.start
    while start > 0 and not _top_level(lines[start]):
        start -= 1
    while start > 0 and lines[start - 1].startswith("@"):
        start -= 1
    end = region.end + 1
    limit = len(lines) if max_lines_after is None else min(len(lines), end + max_lines_after)
    while end < limit and not _top_level(lines[end]):
        end += 1
    return start, end


def _top_level(line: str) -> bool:
    return bool(line.strip()) and not line[0].isspace() and not line.startswith("#")
