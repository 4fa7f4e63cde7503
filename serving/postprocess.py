"""Turn raw model output into a suggestion that fits where the cursor is.

Single-line: the engine stops at the newline; here the tail that repeats what already follows
the cursor on that line is removed. Multi-line: the suggestion ends where the block it started
ends, judged by indentation, so it never runs into the code below the cursor.
"""

from __future__ import annotations

import re

_SCOPE_OPENERS = (":", "{", "(", "[")


def current_line_prefix(prefix: str) -> str:
    return prefix[prefix.rfind("\n") + 1 :]


def current_line_suffix(suffix: str) -> str:
    end = suffix.find("\n")
    return suffix if end < 0 else suffix[:end]


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


def finish_single_line(text: str, line_suffix: str) -> str:
    """Cut at the first newline, and drop a tail that duplicates the rest of the line."""
    newline = text.find("\n")
    if newline >= 0:
        text = text[:newline]
    text = text.rstrip()
    tail = line_suffix.strip()
    if tail and text.endswith(tail):
        text = text[: len(text) - len(tail)].rstrip()
    return text


def multi_line_block_end(text: str, line_prefix: str) -> int | None:
    """Index in `text` where the block started at the cursor ends, or None if it has not yet.

    After a line that opens a scope, the block is the indented body that follows; elsewhere it
    is the code at the cursor line's indentation. The first non-blank line indented less than
    the block ends it; the returned index is that line's preceding newline.
    """
    opens_scope = line_prefix.rstrip().endswith(_SCOPE_OPENERS)
    lines = (line_prefix + text).split("\n")
    block_indent: int | None
    if opens_scope:
        block_indent, floor = None, _indent(line_prefix)
    elif lines[0].strip():
        block_indent, floor = _indent(lines[0]), -1
    else:
        # A blank cursor line: the code must start at or right of the cursor's column.
        block_indent, floor = None, _indent(lines[0]) - 1
    position = len(lines[0]) - len(line_prefix)  # index in `text` of the newline after line 0
    for line in lines[1:]:
        newline_at = position
        position += len(line) + 1
        if not line.strip():
            continue
        indent = _indent(line)
        if block_indent is None:
            if indent <= floor:
                return max(0, newline_at)
            block_indent = indent
        elif indent < block_indent:
            return max(0, newline_at)
    return None


def finish_multi_line(text: str, line_prefix: str) -> str:
    end = multi_line_block_end(text, line_prefix)
    if end is not None:
        text = text[:end]
    return text.rstrip()


def split_blank_line(prefix: str) -> tuple[str, str]:
    """On a blank cursor line, end the prompt at the end of the previous line.

    Tokenizers merge a newline and the indentation after it into one token, so a prompt ending
    right after a newline (or inside the indentation) asks the model for an unusual token
    boundary, and small models answer by breaking the line again. The prompt ends before that
    whitespace instead, the model writes it, and `visible_text` takes it off the output.
    Returns (prompt prefix, the whitespace cut off).
    """
    line = current_line_prefix(prefix)
    if line.strip():
        return prefix, ""
    cut = "\n" + line if len(prefix) > len(line) else line
    return prefix[: len(prefix) - len(cut)], cut


_LEADING_BLANK_LINES = re.compile(r"^(?:[ \t]*\n)+")


def visible_text(generated: str, cut: str) -> tuple[str | None, bool]:
    """The model output as seen from the cursor, for a prompt cut by `split_blank_line`.

    Returns (text, give_up): text is None while the output is too short to tell; give_up is True
    when the model did not continue on a new line at the cursor's column, so no suggestion fits.
    """
    if not cut:
        return generated, False
    indent = cut
    if cut.startswith("\n"):
        if not generated:
            return None, False
        if not generated.startswith("\n"):
            return "", True  # the model went on with the previous line
        generated, indent = generated[1:], cut[1:]
    # Blank lines before the first code line mean nothing at a cursor on a blank line.
    code = _LEADING_BLANK_LINES.sub("", generated)
    if len(code) <= len(indent) and indent.startswith(code):
        return None, False
    if code.startswith(indent):
        return code[len(indent) :], False
    return "", True


def suffix_overlap_start(text: str, suffix: str, complete_lines_only: bool = True) -> int | None:
    """Index of the newline before the first line of `text` (after its first) that repeats the
    first non-blank line of the suffix, or None.

    Models without fill-in-the-middle do not see the suffix and happily write the next lines of
    the file again; that line marks where the suggestion must stop. While streaming, only lines
    that are complete (followed by a newline) are judged.
    """
    anchor = next((line.strip() for line in suffix.split("\n") if line.strip()), "")
    if not anchor:
        return None
    lines = text.split("\n")
    if complete_lines_only:
        lines = lines[:-1]
    position = len(lines[0]) if lines else 0
    for line in lines[1:]:
        if line.strip() == anchor:
            return position
        position += len(line) + 1
    return None


def trim_suffix_overlap(text: str, suffix: str) -> str:
    start = suffix_overlap_start(text, suffix, complete_lines_only=False)
    return text if start is None else text[:start].rstrip()
