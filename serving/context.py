"""Extra prompt context (retrieved chunks, the editor's snippets, API signatures) rendered
before the document prefix.

Each block is introduced by a comment naming where it comes from ("file: path" for a chunk of
another workspace file or an editor snippet, "api: ..." for catalog entries), in the language's
comment syntax, so a model reads the prompt as several files concatenated, as in
repository-level pre-training. Rankings from several sources are fused (reciprocal rank fusion)
and duplicates left out (`fuse_blocks`); blocks are taken best first while they fit the token
budget, then written best LAST: the most relevant text ends up nearest the cursor. Every block
that went in becomes a pb.ContextSource.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from quill.v1 import quill_pb2 as pb
from retrieval.fusion import reciprocal_rank_fusion

# Below this many free tokens no block is worth trying.
_MIN_BLOCK_TOKENS = 8

_HASH_COMMENT = frozenset(
    {
        "python", "ruby", "shellscript", "perl", "r", "yaml", "toml", "makefile",
        "dockerfile", "elixir", "julia", "nim", "coffeescript", "powershell", "plaintext",
    }
)  # fmt: skip
_DASH_COMMENT = frozenset({"lua", "sql", "haskell", "ada", "elm"})


def line_comment(language: str) -> str:
    """The line-comment marker of an LSP language id ("//" for C-like and unknown ones)."""
    if language in _HASH_COMMENT:
        return "#"
    if language in _DASH_COMMENT:
        return "--"
    return "//"


@dataclass(frozen=True)
class ContextBlock:
    # "retrieval" (a chunk of a workspace file), "open_document" or "recent_edit" (the
    # editor's snippets) or "api_search" (catalog entries).
    kind: str
    path: str
    # One-based, inclusive; 0 when not a file region.
    start_line: int
    end_line: int
    text: str
    score: float = 0.0

    def repeats(self, other: ContextBlock) -> bool:
        """Whether this block says again what `other` says: the same text, or lines of the same
        file that overlap."""
        if self.text.strip() == other.text.strip():
            return True
        return (
            bool(self.path)
            and self.path == other.path
            and self.start_line <= other.end_line
            and other.start_line <= self.end_line
        )


@dataclass(frozen=True)
class RenderedContext:
    text: str = ""
    sources: list[pb.ContextSource] = field(default_factory=list)
    tokens: int = 0


def fuse_blocks(rankings: Sequence[Sequence[ContextBlock]]) -> list[ContextBlock]:
    """One ranking from several (each best first) by reciprocal rank fusion, where a block that
    repeats one ranked before it is left out. On a tie the earlier ranking's block comes first."""
    blocks = [block for ranking in rankings for block in ranking]
    ids: list[list[int]] = []
    for ranking in rankings:
        start = sum(len(r) for r in ids)
        ids.append(list(range(start, start + len(ranking))))
    fused: list[ContextBlock] = []
    for index, _ in reciprocal_rank_fusion(ids):
        block = blocks[index]
        if not any(block.repeats(kept) for kept in fused):
            fused.append(block)
    return fused


def _render_block(block: ContextBlock, comment: str) -> str:
    if block.kind != "api_search":
        header = f"{comment} file: {block.path}"
    else:
        header = f"{comment} api: {block.path}" if block.path else f"{comment} api"
    return f"{header}\n{block.text.rstrip()}\n\n"


def render_context(
    blocks: Sequence[ContextBlock],
    language: str,
    budget_tokens: int,
    encode: Callable[[str], list[int]],
    current_path: str = "",
) -> RenderedContext:
    """Blocks (best first) that fit `budget_tokens`, as prompt text and sources.

    With `current_path`, a last "file:" comment introduces the document itself, so the model
    knows where the context ends. Its tokens count against the budget.
    """
    if budget_tokens <= 0 or not blocks:
        return RenderedContext()
    comment = line_comment(language)
    trailer = f"{comment} file: {current_path}\n" if current_path else ""
    remaining = budget_tokens - (len(encode(trailer)) if trailer else 0)
    chosen: list[tuple[ContextBlock, str, int]] = []
    for block in blocks:
        if remaining < _MIN_BLOCK_TOKENS:
            break
        text = _render_block(block, comment)
        tokens = len(encode(text))
        if tokens > remaining:
            continue  # a smaller, lower-ranked block may still fit
        chosen.append((block, text, tokens))
        remaining -= tokens
    if not chosen:
        return RenderedContext()
    ordered = list(reversed(chosen))
    text = "".join(rendered for _, rendered, _ in ordered) + trailer
    sources = [
        pb.ContextSource(
            kind=block.kind,
            path=block.path,
            start_line=block.start_line,
            end_line=block.end_line,
            score=block.score,
            tokens=tokens,
        )
        for block, _, tokens in chosen
    ]
    return RenderedContext(text, sources, budget_tokens - remaining)
