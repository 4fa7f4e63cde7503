"""Whether a file with a patch in place parses: Python's own parser, tree-sitter for others."""

from __future__ import annotations

import ast
import warnings

from quill.treesitter import parser_for


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
