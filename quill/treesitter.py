"""tree-sitter grammars by LSP language id and by file name, loaded lazily and cached.

Shared by the language server (trigger decisions) and retrieval (chunking), so it lives in this
neutral package: it imports only tree-sitter and the grammar packages, never either side.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from pathlib import PurePosixPath
from typing import Any

logger = logging.getLogger(__name__)

# LSP language id -> (grammar module, its language function).
GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "javascriptreact": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

# File suffix -> LSP language id (also for languages without a grammar here).
LANGUAGE_BY_SUFFIX = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".jsx": "javascriptreact", ".ts": "typescript",
    ".tsx": "typescriptreact", ".go": "go", ".rs": "rust", ".java": "java", ".c": "c",
    ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".lua": "lua", ".rb": "ruby", ".sh": "shellscript", ".kt": "kotlin", ".swift": "swift",
    ".cs": "csharp", ".php": "php", ".scala": "scala", ".sql": "sql", ".md": "markdown",
    ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".html": "html",
    ".css": "css", ".vim": "vim", ".hs": "haskell", ".ex": "elixir", ".exs": "elixir",
}  # fmt: skip


def language_for_path(path: str) -> str:
    """The LSP language id of a file by its suffix; "plaintext" when unknown."""
    return LANGUAGE_BY_SUFFIX.get(PurePosixPath(path).suffix.lower(), "plaintext")


@cache
def parser_for(language_id: str) -> Any | None:
    """A tree-sitter Parser for the language, or None without a grammar (logged once)."""
    spec = GRAMMARS.get(language_id)
    if spec is None:
        return None
    try:
        from tree_sitter import Language, Parser

        module = importlib.import_module(spec[0])
        return Parser(Language(getattr(module, spec[1])()))
    except (ImportError, AttributeError, ValueError) as error:
        logger.info("no tree-sitter grammar for %s (%s)", language_id, error)
        return None
