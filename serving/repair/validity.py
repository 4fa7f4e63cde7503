"""Whether a file with a patch in place parses: Python's own parser, tree-sitter for others.

`SyntaxCheck` makes syntax part of the guidance: during decoding it checks the spliced file at
every statement end (each newline the patch writes) and keeps a region that opens a block a block
opener, so a sample that cannot parse is pruned where it goes wrong instead of being thrown away
at the end.
"""

from __future__ import annotations

import ast
import codeop
import re
import warnings

from quill.treesitter import parser_for
from serving.repair.prompt import Region, top_level_block

# Above this many characters, a file is checked during decoding in the top-level statement that
# holds the region only: a whole-file parse at every statement end would hold serving's event
# loop (about 1.6 s for 1 MB). A finished candidate is still parsed whole, in the parse pool.
LOCAL_CHECK_CHARS = 100_000

# Statements that open a block (soft keywords included: `match`/`case`).
_BLOCK_KEYWORDS = frozenset(
    {"if", "elif", "else", "for", "while", "with", "try", "except", "finally", "def", "class",
     "async", "match", "case"}
)  # fmt: skip
_WORD = re.compile(r"[^\W\d]\w*")


def syntax_error(language: str, text: str) -> str | None:
    """A short description of the first syntax error, or None when the text parses (or when no
    parser for the language is installed: unknown is not reported as broken)."""
    if language == "python":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not an error
                ast.parse(text)
        except SyntaxError as error:
            return f"line {error.lineno}: {error.msg}"
        except (ValueError, RecursionError, MemoryError) as error:
            return f"{type(error).__name__}: {error}"
        return None
    parser = parser_for(language)
    if parser is None:
        return None
    tree = parser.parse(text.encode("utf-8"))
    if tree.root_node.has_error:
        return "tree-sitter found a syntax error"
    return None


def parses(language: str, text: str) -> bool:
    return syntax_error(language, text) is None


def prefix_error(text: str) -> str | None:
    """For Python source that may stop mid-way (an open block, an open bracket): None when it is
    complete or can still be completed, else the syntax error (the compile-in-context check of
    the standard library's `codeop`, which tells "incomplete" from "wrong")."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            codeop.compile_command(text + "\n", symbol="exec")
    except SyntaxError as error:
        return f"line {error.lineno}: {error.msg}"
    except (ValueError, OverflowError, RecursionError, MemoryError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def opens_block(line: str) -> bool | None:
    """Whether a line of a patch is a block opener, judged from its first word once that word is
    complete (None: not known yet)."""
    stripped = line.lstrip()
    if not stripped:
        return None
    word = _WORD.match(stripped)
    if word is None:
        return False  # starts with a bracket, a quote, an operator, a comment...
    if word.end() == len(stripped):
        # The word may go on: undecided while it can still become a block keyword.
        if any(keyword.startswith(word.group()) for keyword in _BLOCK_KEYWORDS):
            return None
        return False
    return word.group() in _BLOCK_KEYWORDS


class SyntaxCheck:
    """Prunes tokens after which the patch can no longer parse in the file.

    At a newline that completes the patch's last line, the whole file with the patch in place
    must parse; at a newline before that (a region of several lines), the file up to there must
    be complete or completable. When the region opens a block, the patch's last line must start
    with a block keyword. Python only: other languages are checked once a patch is finished.
    """

    def __init__(self, region: Region, language: str) -> None:
        if sum(len(line) + 1 for line in region.lines) > LOCAL_CHECK_CHARS:
            region = local_region(region)
        self._region = region
        self._enabled = language == "python"
        self._before = region.text_before()
        self._needs_opener = region.opens_block
        self.pruned = 0

    def feasible(self, patch_so_far: str, token: str) -> bool:
        if not self._enabled:
            return True
        ok = self._feasible(patch_so_far + token, patch_so_far.count("\n"))
        self.pruned += not ok
        return ok

    def _feasible(self, text: str, lines_done_before: int) -> bool:
        lines = text.split("\n")
        last_index = self._region.line_count - 1
        on_last_line = len(lines) - 1 >= last_index
        if self._needs_opener and on_last_line and opens_block(lines[last_index]) is False:
            return False
        # Lines completed by this token (each ends at one of its newlines).
        for done in range(lines_done_before + 1, min(len(lines) - 1, last_index + 1) + 1):
            patch = "\n".join(lines[:done])
            if done == self._region.line_count:
                return syntax_error("python", self._region.splice(patch)) is None
            prefix = f"{self._before}\n{patch}" if self._region.start else patch
            if prefix_error(prefix) is not None:
                return False
        return True


def local_region(region: Region) -> Region:
    """The region within the top-level statement (def, class, ...) that holds it, cut out of the
    file: whether a patch parses depends on that statement, not on the rest of the file."""
    start, end = top_level_block(region)
    lines = region.lines[start:end]
    return Region(lines, region.start - start, region.end - start)
