"""Single- or multi-line: CodeCompose's rule, decided with tree-sitter where a grammar exists.

Multi-line only where a new block starts:
- the cursor is at the end of a line whose last token opens a scope (Python's `:` ending a
  `def`/`class`/`if`/..., a `{` opening a function, class or statement block), or
- the cursor is on an empty line at the end of a scope (what follows is dedented, a closing
  bracket, or the end of the file).
Everywhere else one line. Languages without a grammar, and files that do not parse, fall back to
indentation rules: never an exception.

Grammars load lazily on first use, so the language server still starts without them.
"""

from __future__ import annotations

import logging

from lsp_server.cursor_context import CursorContext
from quill.treesitter import parser_for
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

# Nodes whose ':' or '{' starts a block of statements or members (not a literal or a type).
_SCOPE_NODES = frozenset(
    {
        # Python
        "function_definition", "class_definition", "if_statement", "elif_clause", "else_clause",
        "for_statement", "while_statement", "with_statement", "try_statement", "except_clause",
        "finally_clause", "match_statement", "case_clause", "block",
        # brace languages
        "statement_block", "compound_statement", "class_body", "interface_body", "enum_body",
        "declaration_list", "field_declaration_list", "function_body", "switch_body",
        "constructor_body", "switch_block", "impl_item", "trait_item", "mod_item",
        "function_item", "function_declaration", "method_declaration", "class_declaration",
    }
)  # fmt: skip
_BLOCK_KEYWORDS = ("def", "class", "if", "elif", "else", "for", "while", "with", "try", "except",
                   "finally", "match", "case", "async")  # fmt: skip
# First words of lines whose '{' opens a block even when the parse is unfinished.
_BRACE_BLOCK_KEYWORDS = frozenset(
    {
        "class", "struct", "enum", "interface", "impl", "trait", "mod", "namespace", "else",
        "do", "try", "for", "if", "while", "switch", "select", "func", "fn", "loop", "match",
        "unsafe", "finally", "catch", "pub", "public", "private", "protected", "static",
    }
)  # fmt: skip
_OPENERS = (":", "{")
_CLOSERS = ("}", ")", "]")


def choose_mode(setting: str, language_id: str, context: CursorContext) -> pb.CompletionMode:
    if setting == "single":
        return pb.COMPLETION_MODE_SINGLE_LINE
    if setting == "multi":
        return pb.COMPLETION_MODE_MULTI_LINE
    if context.line_after.strip():
        return pb.COMPLETION_MODE_SINGLE_LINE  # code after the cursor on this line
    before = context.line_before.rstrip()
    if not before:
        multi = _at_end_of_scope(context)
    elif before.endswith(_OPENERS):
        multi = _opens_scope(language_id, context, before)
    else:
        multi = False
    return pb.COMPLETION_MODE_MULTI_LINE if multi else pb.COMPLETION_MODE_SINGLE_LINE


def _opens_scope(language_id: str, context: CursorContext, before: str) -> bool:
    parser = parser_for(language_id)
    if parser is None:
        return True  # indentation rules: a line ending in ':' or '{' opens a block
    try:
        prefix = context.prefix.encode("utf-8", "surrogatepass")
        # Parse the text up to the cursor's line end: what follows cannot change what the
        # opener belongs to, and an unfinished block at the end parses predictably.
        tree = parser.parse(prefix)
        end = len(prefix) - (len(context.line_before) - len(before))
        node = tree.root_node.descendant_for_byte_range(end - 1, end)
    except Exception:  # noqa: BLE001 - a parser failure must never cost the completion
        logger.debug("tree-sitter failed; using indentation rules", exc_info=True)
        return True
    if node is None or node.parent is None:
        return True
    parent = node.parent
    if parent.type in _SCOPE_NODES:
        return True
    if parent.type == "ERROR" or parent.has_error:
        # An unfinished block: a scope if the statement starts with a block keyword (Python)
        # or the brace follows a ')' or a name (function, class, control statement).
        text = before.lstrip()
        if before.endswith(":"):
            return text.split(" ", 1)[0].rstrip(":") in _BLOCK_KEYWORDS
        return (
            before[:-1].rstrip().endswith((")", ">"))
            or text.split(" ", 1)[0].rstrip("{") in _BRACE_BLOCK_KEYWORDS
        )
    return False


def _at_end_of_scope(context: CursorContext) -> bool:
    """An empty cursor line where the block ends: what follows is dedented, closes a bracket or
    is the end of the file."""
    column = len(context.line_before.expandtabs(4))
    for line in context.suffix.split("\n")[1:]:
        if not line.strip():
            continue
        stripped = line.lstrip()
        indent = len(line.expandtabs(4)) - len(stripped.expandtabs(4))
        return indent < column or stripped.startswith(_CLOSERS) or (column == 0 and indent == 0)
    return True
