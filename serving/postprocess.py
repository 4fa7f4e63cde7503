"""Turn raw model output into a suggestion that fits where the cursor is.

Single-line: the engine stops at the newline; here the tail that repeats what already follows
the cursor on that line is removed. Multi-line: the suggestion ends where the block it started
ends (`BlockCutter`: by syntax with tree-sitter where the language has a grammar and the code
parses, by indentation otherwise), or where it starts repeating the code below the cursor.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from quill.treesitter import parser_for

logger = logging.getLogger(__name__)

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


# Nodes that hold a sequence of statements or members: the block a suggestion written on a
# blank line (or forced multi-line mid-statement) belongs to.
_BLOCK_NODES = frozenset(
    {
        "block", "module", "statement_block", "program", "class_body", "switch_case",
        "switch_default", "compound_statement", "translation_unit", "field_declaration_list",
        "declaration_list", "source_file", "interface_body", "enum_body", "constructor_body",
        "switch_block_statement_group", "expression_case", "default_case", "type_case",
        "communication_case", "case_statement", "match_block",
    }
)  # fmt: skip
_ROOT_NODES = frozenset({"module", "program", "translation_unit", "source_file"})


def _settled(line: str) -> bool:
    """Whether a partial line shows enough to judge it: its first token is complete. A line
    starting `el` may become `else:` (which continues an `if`), so it cannot end a block yet."""
    stripped = line.strip()
    if not stripped:
        return False
    if not (stripped[0].isalnum() or stripped[0] == "_"):
        return True
    return any(not (ch.isalnum() or ch == "_") for ch in stripped)


# How much code around the cursor BlockCutter parses (tree-sitter: about 10 ms per parse).
PARSED_CHARS = 32_000


def code_before(prefix: str, limit: int) -> str:
    """The end of `prefix`, about `limit` characters, starting at a top-level line (one that
    begins with a word, a decorator or a comment at column 0), so the block around the cursor
    is whole and parses; at most twice `limit`, else from a line start."""
    if len(prefix) <= limit:
        return prefix
    floor = len(prefix) - 2 * limit
    at = len(prefix) - limit
    while at > floor:
        line_start = prefix.rfind("\n", floor, at) + 1
        if line_start <= floor:
            break
        first = prefix[line_start : line_start + 1]
        if first.isalnum() or first in ("_", "@", "#"):
            return prefix[line_start:]
        at = line_start - 1
    newline = prefix.find("\n", len(prefix) - limit)
    return prefix[newline + 1 :] if newline >= 0 else prefix[-limit:]


def code_after(suffix: str, limit: int) -> str:
    """The start of `suffix`, at most `limit` characters, cut at a line end."""
    if len(suffix) <= limit:
        return suffix
    newline = suffix.rfind("\n", 0, limit)
    return suffix[:newline] if newline > 0 else suffix[:limit]


class BlockCutter:
    """Where a multi-line suggestion ends, judged as it streams.

    After a line that opens a scope (`:` or `{` at the cursor), the suggestion is the body and
    ends with the statement that line belongs to (an `if` keeps its `else`); in brace languages
    the closing `}` line is included unless the suffix already closes that block. Elsewhere (a
    blank line, or mid-statement in forced multi-line mode) it is the rest of the enclosing
    block: it stops before the line that closes or dedents out of it. Syntax decides where a
    grammar exists and the code around the block parses; indentation decides otherwise. Lines
    repeating the first line of the suffix end it too (models without fill-in-the-middle write
    the code below the cursor again).
    """

    def __init__(self, prefix: str, suffix: str, language: str) -> None:
        # Every judgement parses the code before the cursor again: only the code near it is
        # kept (parsing 1 MB takes 0.4 s and holds the GIL; serving would stall meanwhile).
        prefix = code_before(prefix, PARSED_CHARS)
        suffix = code_after(suffix, PARSED_CHARS)
        self._prefix = prefix
        self._suffix = suffix
        self._line_prefix = current_line_prefix(prefix)
        self._parser = parser_for(language)
        self._prefix_bytes = prefix.encode("utf-8", "surrogatepass")
        before = self._line_prefix.rstrip()
        self._opener = before[-1] if before.endswith((":", "{")) else ""
        line_start = len(self._prefix_bytes) - len(
            self._line_prefix.encode("utf-8", "surrogatepass")
        )
        self._line_start = line_start
        self._opener_at = line_start + len(before.encode("utf-8", "surrogatepass")) - 1
        self._closed_in_suffix = self._opener == "{" and self._suffix_closes_block()
        self._cache: tuple[tuple[int, bool], int | None] | None = None

    def end(self, text: str) -> int | None:
        """While streaming: the index in `text` where the suggestion ends, or None while that is
        not decided yet. Only complete lines are judged, and a partial line once its first
        token is complete."""
        last_newline = text.rfind("\n")
        key = (last_newline, _settled(text[last_newline + 1 :]))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        judged = text if key[1] else text[: last_newline + 1]
        end = self._block_end(judged, final=False)
        overlap = suffix_overlap_start(text, self._suffix)
        if overlap is not None and (end is None or overlap < end):
            end = overlap
        self._cache = (key, end)
        return end

    def finish(self, text: str) -> str:
        """The suggestion once generation is over."""
        end = self._block_end(text, final=True)
        if end is not None:
            text = text[:end]
        return trim_suffix_overlap(text.rstrip(), self._suffix)

    # --- deciding ---------------------------------------------------------------------------

    def _block_end(self, text: str, final: bool) -> int | None:
        syntax_end = self._syntax_end(text, final)
        if syntax_end is not False:
            return syntax_end  # type: ignore[return-value]
        return multi_line_block_end(text, self._line_prefix)

    def _syntax_end(self, text: str, final: bool) -> int | None | bool:
        """The block end by syntax; None while undecided; False when syntax cannot tell (no
        grammar, or the code around the block does not parse) and indentation must."""
        if self._parser is None:
            return False
        try:
            source = self._prefix_bytes + text.encode("utf-8", "surrogatepass")
            tree = self._parser.parse(source)
            if self._opener:
                end = self._opened_block_end(tree.root_node, source)
            else:
                end = self._enclosing_block_end(tree.root_node, source, text)
        except Exception:  # noqa: BLE001 - a parser failure must never cost the suggestion
            logger.debug("tree-sitter failed; using indentation", exc_info=True)
            return False
        if end is None or end is False:
            return end
        assert isinstance(end, int)
        position = self._char_index(source, end)
        if position >= len(text.rstrip()):
            return None  # the block reaches the end of what is written so far
        if not final:
            line_rest = text[position:].split("\n", 1)[0]
            if not text[position:].strip() or line_rest.strip():
                # Nothing written after the block yet, or code right after it on the same line
                # (`} else {`, `});`) that may still turn out to belong to it.
                return None
        return position

    def _char_index(self, source: bytes, byte_offset: int) -> int:
        start = len(self._prefix_bytes)
        return len(source[start:byte_offset].decode("utf-8", "surrogatepass"))

    def _opened_block_end(self, root: Any, source: bytes) -> int | None | bool:
        token = root.descendant_for_byte_range(self._opener_at, self._opener_at + 1)
        if token is None or token.type != self._opener or token.parent is None:
            return False
        cursor = len(self._prefix_bytes)
        if self._opener == "{":
            block = token.parent
            statement = block.parent
        else:
            block = token.next_named_sibling
            while block is not None and block.type == "comment":
                block = block.next_named_sibling
            statement = token.parent
            if block is not None and block.type == "ERROR":
                return _unusable(block, source)  # e.g. an unterminated string in the body
            if block is None or block.type != "block":
                return False
        if statement is None or statement.type == "ERROR":
            return False
        if block.has_error:
            return _unusable(block, source)
        if self._opener == "{":
            closing = block.children[-1]
            if closing.type != "}" or closing.is_missing:
                return None
            if self._closed_in_suffix:
                return self._line_begin(source, closing.start_byte, cursor)
        elif block.end_byte <= cursor:
            return None  # no body yet
        # The statement this line belongs to, e.g. the `if` whose `else` may follow.
        while (
            statement.parent is not None
            and statement.parent.type not in _ROOT_NODES
            and statement.parent.start_byte >= self._line_start
        ):
            statement = statement.parent
        if statement.has_error:
            return _unusable(statement, source)
        return self._line_end(source, statement.end_byte)

    def _enclosing_block_end(self, root: Any, source: bytes, text: str) -> int | None | bool:
        first = len(text) - len(text.lstrip())
        if first == len(text):
            return None
        cursor = len(self._prefix_bytes)
        at = cursor + len(text[:first].encode("utf-8", "surrogatepass"))
        node = root.descendant_for_byte_range(at, at + 1)
        while node is not None and node.type not in _BLOCK_NODES:
            node = node.parent
        if node is None:
            return False
        if node.has_error:
            return _unusable(node, source)
        if node.type in _ROOT_NODES:
            return None  # top level: no block ends
        closing = node.children[-1] if node.children else None
        if closing is not None and closing.type == "}":
            # The block was opened before the cursor: its brace is the code below, not ours.
            return self._line_begin(source, closing.start_byte, cursor)
        return self._line_end(source, node.end_byte)

    @staticmethod
    def _line_begin(source: bytes, byte_offset: int, floor: int) -> int:
        """Where to cut to drop the line holding `byte_offset` if only blanks precede it on
        that line (else cut right there)."""
        newline = source.rfind(b"\n", floor, byte_offset)
        if newline >= 0 and not source[newline + 1 : byte_offset].strip():
            return newline
        if newline < 0 and not source[floor:byte_offset].strip():
            return floor
        return byte_offset

    @staticmethod
    def _line_end(source: bytes, byte_offset: int) -> int:
        """Extend an end to its line end when only blanks (or the `;` that ends a C `struct`
        declaration) follow on that line."""
        newline = source.find(b"\n", byte_offset)
        stop = len(source) if newline < 0 else newline
        return stop if source[byte_offset:stop].strip() in (b"", b";") else byte_offset

    def _suffix_closes_block(self) -> bool:
        """Whether the `{` at the cursor is already closed in the code below it."""
        if self._parser is None:
            return _suffix_starts_with_closer(self._suffix, self._line_prefix)
        try:
            source = self._prefix_bytes + self._suffix.encode("utf-8", "surrogatepass")
            tree = self._parser.parse(source)
            token = tree.root_node.descendant_for_byte_range(self._opener_at, self._opener_at + 1)
            if token is None or token.type != "{" or token.parent is None:
                return _suffix_starts_with_closer(self._suffix, self._line_prefix)
            closing = token.parent.children[-1]
            return closing.type == "}" and not closing.is_missing
        except Exception:  # noqa: BLE001
            logger.debug("tree-sitter failed on the suffix", exc_info=True)
            return _suffix_starts_with_closer(self._suffix, self._line_prefix)


# Tokens that leave a construct open when an ERROR ends with them (an unterminated string).
_OPEN_TOKENS = frozenset({"string_start", "(", "[", "{", '"', "'", "`", "template_string"})


def _unusable(node: Any, source: bytes) -> None | bool:
    """For a node with parse errors: None (undecided) when the code is merely unfinished (a
    missing `}` at the end, an unterminated string), False (let indentation judge) when it is
    broken."""
    end = len(source.rstrip())
    stack = [node]
    while stack:
        current = stack.pop()
        if current.is_missing and current.start_byte >= end:
            return None
        if current.type == "ERROR":
            if current.end_byte >= end:
                return None
            last = current.children[-1] if current.children else None
            if last is not None and last.type in _OPEN_TOKENS:
                return None
        stack.extend(child for child in current.children if child.has_error or child.is_missing)
    return False


def _suffix_starts_with_closer(suffix: str, line_prefix: str) -> bool:
    """Indentation rule: the first code line below is a `}` at the opener line's indentation."""
    for line in suffix.split("\n")[1:]:
        if line.strip():
            return line.lstrip().startswith("}") and _indent(line) == _indent(line_prefix)
    return False
