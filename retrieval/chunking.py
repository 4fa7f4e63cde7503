"""Split a source file into chunks worth retrieving: definitions, and windows for the rest.

With a tree-sitter grammar (quill/treesitter.py) every function, class and method is a chunk;
a definition longer than `max_lines` is split into its header and its inner definitions (a big
class becomes its signature plus one chunk per method), or into windows when it has none.
Top-level code between definitions (imports, constants, scripts) is grouped into windows.
Files without a grammar, or that fail to parse, are cut into overlapping line windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from quill.treesitter import language_for_path, parser_for

logger = logging.getLogger(__name__)

DEFAULT_MAX_LINES = 80
DEFAULT_WINDOW_LINES = 40
_WINDOW_OVERLAP = 10
# The embedding model reads about 256 tokens; longer chunk text only costs time.
MAX_CHUNK_CHARS = 4000

# Node types that are definitions worth a chunk of their own.
_DEFINITIONS = frozenset(
    {
        # Python
        "function_definition", "class_definition", "decorated_definition",
        # JavaScript / TypeScript
        "function_declaration", "generator_function_declaration", "class_declaration",
        "method_definition", "interface_declaration", "abstract_class_declaration",
        "type_alias_declaration", "enum_declaration",
        # Go
        "method_declaration", "type_declaration",
        # Rust
        "function_item", "impl_item", "struct_item", "enum_item", "trait_item", "mod_item",
        # Java
        "constructor_declaration", "record_declaration",
        # C / C++
        "struct_specifier", "class_specifier", "namespace_definition", "type_definition",
    }
)  # fmt: skip
# Wrappers whose single definition child should be the chunk (keeps `export` / decorators).
_WRAPPERS = frozenset({"export_statement", "decorated_definition", "template_declaration"})


@dataclass(frozen=True)
class Chunk:
    path: str
    # One-based, inclusive.
    start_line: int
    end_line: int
    text: str
    # "definition", "header" (a large definition's opening lines) or "window".
    kind: str
    name: str = ""


def chunk_file(
    path: str,
    text: str,
    language: str | None = None,
    max_lines: int = DEFAULT_MAX_LINES,
    window_lines: int = DEFAULT_WINDOW_LINES,
) -> list[Chunk]:
    """Chunks of `text` in line order; blank-only regions give none."""
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        return []
    language = language or language_for_path(path)
    parser = parser_for(language)
    if parser is not None:
        try:
            tree = parser.parse(text.encode("utf-8", "surrogatepass"))
            return _Chunker(path, lines, max_lines, window_lines).root(tree.root_node)
        except Exception:  # noqa: BLE001 - a parser failure falls back to windows
            logger.debug("tree-sitter failed on %s; using line windows", path, exc_info=True)
    return _windows(path, lines, 1, len(lines), window_lines)


def _windows(path: str, lines: list[str], start: int, end: int, size: int) -> list[Chunk]:
    """Overlapping windows over one-based lines start..end, skipping blank ones."""
    chunks: list[Chunk] = []
    step = max(1, size - _WINDOW_OVERLAP)
    first = start
    while first <= end:
        last = min(end, first + size - 1)
        if end - last <= _WINDOW_OVERLAP:
            last = end  # a short tail joins this window rather than repeating most of it
        chunk = _make(path, lines, first, last, "window")
        if chunk is not None:
            chunks.append(chunk)
        if last == end:
            break
        first += step
    return chunks


def _make(
    path: str, lines: list[str], start: int, end: int, kind: str, name: str = ""
) -> Chunk | None:
    # Trim blank lines at both ends so line ranges point at code.
    while start <= end and not lines[start - 1].strip():
        start += 1
    while end >= start and not lines[end - 1].strip():
        end -= 1
    if start > end:
        return None
    body = "\n".join(lines[start - 1 : end])[:MAX_CHUNK_CHARS]
    return Chunk(path, start, end, body, kind, name)


class _Chunker:
    def __init__(self, path: str, lines: list[str], max_lines: int, window_lines: int) -> None:
        self.path = path
        self.lines = lines
        self.max_lines = max_lines
        self.window_lines = window_lines

    def root(self, root: Any) -> list[Chunk]:
        chunks = self._region(root, 1, len(self.lines))
        return sorted(chunks, key=lambda c: (c.start_line, c.end_line))

    def _region(self, node: Any, start: int, end: int) -> list[Chunk]:
        """Definitions below `node` as chunks; the lines between them (start..end) as windows."""
        chunks: list[Chunk] = []
        gap_start = start
        for definition in _definitions_below(node):
            first = definition.start_point[0] + 1
            last = definition.end_point[0] + 1
            if first < gap_start:
                continue  # shares a line with the previous definition
            chunks += self._gap(gap_start, first - 1)
            chunks += self._definition(definition, first, last)
            gap_start = last + 1
        chunks += self._gap(gap_start, end)
        return chunks

    def _gap(self, start: int, end: int) -> list[Chunk]:
        if start > end:
            return []
        return _windows(self.path, self.lines, start, end, self.window_lines)

    def _definition(self, node: Any, first: int, last: int) -> list[Chunk]:
        name = _name_of(node)
        if last - first + 1 <= self.max_lines:
            chunk = _make(self.path, self.lines, first, last, "definition", name)
            return [chunk] if chunk is not None else []
        inner = list(_definitions_below(_body_of(node)))
        if not inner:
            return _windows(self.path, self.lines, first, last, self.window_lines)
        header_end = min(inner[0].start_point[0], first - 1 + self.window_lines)
        chunks: list[Chunk] = []
        header = _make(self.path, self.lines, first, header_end, "header", name)
        if header is not None:
            chunks.append(header)
        return chunks + self._region(_body_of(node), header_end + 1, last)


def _body_of(node: Any) -> Any:
    """The node whose children are a definition's members (itself for wrappers)."""
    for child in node.children:
        if child.type in _DEFINITIONS:
            return _body_of(child) if node.type in _WRAPPERS else node
    body = node.child_by_field_name("body")
    return body if body is not None else node


def _definitions_below(node: Any) -> list[Any]:
    """Outermost definition nodes under `node` (not descending into them), in order."""
    found: list[Any] = []
    stack = list(reversed(node.children))
    while stack:
        child = stack.pop()
        if child.type in _DEFINITIONS or (
            child.type in _WRAPPERS and any(c.type in _DEFINITIONS for c in child.children)
        ):
            found.append(child)
        else:
            stack.extend(reversed(child.children))
    return found


def _name_of(node: Any) -> str:
    target = node
    if node.type in _WRAPPERS:
        target = next((c for c in node.children if c.type in _DEFINITIONS), node)
    name = target.child_by_field_name("name")
    if name is None:
        # Go's `type T struct` keeps the name one level down, in a type_spec.
        spec = next((c for c in target.children if c.type == "type_spec"), None)
        name = spec.child_by_field_name("name") if spec is not None else None
    if name is None:
        declarator = target.child_by_field_name("declarator")
        while declarator is not None and declarator.child_by_field_name("declarator") is not None:
            declarator = declarator.child_by_field_name("declarator")
        name = declarator
    if name is None:
        name = target.child_by_field_name("type")  # Rust's `impl Type`
    if name is None or name.text is None:
        return ""
    return bytes(name.text).decode("utf-8", "replace")[:200]
