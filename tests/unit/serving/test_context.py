"""Prompt context: rendering blocks in a budget, and the editor's snippets fused with retrieved
chunks without duplicates."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from quill.v1 import quill_pb2 as pb
from retrieval.index import Hit
from serving.config import RetrievalConfig
from serving.context import ContextBlock, fuse_blocks, line_comment, render_context
from serving.editor_context import editor_blocks, validate_snippets
from serving.errors import InvalidRequestError
from serving.retrieval_context import PromptRetriever
from serving.workspaces import WorkspaceKey


def _encode(text: str) -> list[int]:
    return list(range(len(text.split())))  # one "token" per word


def test_blocks_fit_the_budget_best_last_with_sources() -> None:
    blocks = [
        ContextBlock("retrieval", "pkg/a.py", 3, 4, "def alpha(x):\n    return x", 0.9),
        ContextBlock("retrieval", "pkg/big.py", 1, 9, " ".join(["word"] * 100), 0.8),
        ContextBlock("retrieval", "pkg/b.py", 7, 7, "BETA = 2", 0.5),
    ]
    rendered = render_context(blocks, "python", 20, _encode, current_path="main.py")
    assert rendered.text == (
        "# file: pkg/b.py\nBETA = 2\n\n"
        "# file: pkg/a.py\ndef alpha(x):\n    return x\n\n"
        "# file: main.py\n"
    )
    assert [s.path for s in rendered.sources] == ["pkg/a.py", "pkg/b.py"]
    assert rendered.sources[0].start_line == 3 and rendered.sources[0].end_line == 4
    assert rendered.sources[0].kind == "retrieval"
    assert rendered.tokens <= 20
    assert rendered.tokens == sum(s.tokens for s in rendered.sources) + 3


def test_nothing_fits_or_no_budget() -> None:
    block = ContextBlock("retrieval", "a.go", 1, 1, "x " * 50, 1.0)
    assert render_context([block], "go", 10, _encode).text == ""
    assert render_context([block], "go", 0, _encode).sources == []


def test_comment_syntax_by_language() -> None:
    assert line_comment("python") == "#"
    assert line_comment("lua") == "--"
    assert line_comment("typescript") == "//"
    block = ContextBlock("api_search", "json", 0, 0, "json.loads(s)", 1.0)
    assert render_context([block], "rust", 50, _encode).text.startswith("// api: json\n")


# --- the editor's snippets beside retrieved chunks --------------------------------------------


def test_fused_rankings_leave_out_what_repeats() -> None:
    editor = [
        ContextBlock("recent_edit", "pkg/a.py", 10, 20, "def edited():\n    pass", 0.6),
        ContextBlock("open_document", "pkg/b.py", 1, 20, "B = 1", 0.4),
    ]
    retrieved = [
        # The same lines of pkg/a.py as the recent edit (the index's older copy).
        ContextBlock("retrieval", "pkg/a.py", 15, 30, "def edited():\n    return 0", 0.03),
        ContextBlock("retrieval", "pkg/c.py", 1, 5, "C = 3", 0.02),
        # The same text as the open document's window, from another path.
        ContextBlock("retrieval", "vendored/b.py", 1, 1, "B = 1\n", 0.01),
    ]
    fused = fuse_blocks([editor, retrieved])
    assert [(b.kind, b.path) for b in fused] == [
        ("recent_edit", "pkg/a.py"),  # tie at rank 1: the editor's text first
        ("open_document", "pkg/b.py"),
        ("retrieval", "pkg/c.py"),
    ]
    assert fuse_blocks([[], []]) == []


def _snippet(kind: str, path: str, lines: tuple[int, int], text: str, score: float) -> Any:
    return pb.ContextSnippet(
        kind=kind, path=path, start_line=lines[0], end_line=lines[1], text=text, score=score
    )


def test_editor_blocks_best_first_without_the_documents_own_lines() -> None:
    request = pb.CompleteRequest(
        file_path="main.py",
        context=pb.ContextOptions(
            snippets=[
                _snippet("open_document", "util.py", (1, 3), "def helper(): ...", 0.2),
                _snippet("recent_edit", "main.py", (5, 8), "x = 1", 0.9),  # in the prompt
                _snippet("recent_edit", "main.py", (400, 402), "def far(): ...", 0.5),
                _snippet("open_document", "empty.py", (1, 1), "   \n", 0.8),
            ]
        ),
    )
    blocks = editor_blocks(request, shown=(1, 120))
    assert [(b.path, b.start_line, b.score) for b in blocks] == [
        ("main.py", 400, pytest.approx(0.5)),
        ("util.py", 1, pytest.approx(0.2)),
    ]


@pytest.mark.parametrize(
    ("snippets", "message"),
    [
        ([_snippet("clipboard", "a.py", (1, 1), "x", 0.1)], "kind 'clipboard'"),
        ([_snippet("recent_edit", "a.py", (1, 1), "x\x00", 0.1)], "NUL"),
        ([_snippet("recent_edit", "a.py", (5, 2), "x", 0.1)], "one-based"),
    ],
)
def test_bad_snippets_are_refused_with_a_clear_reason(snippets: list[Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        validate_snippets(snippets)
    validate_snippets([_snippet("recent_edit", "a.py", (1, 3), "x", 0.1)])


class _Workspace:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.excluded: list[Any] = []

    def search(self, query: str, k: int, path: str | None, lines: Any) -> list[Hit]:
        self.excluded.append((path, lines))
        return self.hits


class _Registry:
    def __init__(self, workspace: _Workspace) -> None:
        self.workspace = workspace

    def get(self, key: WorkspaceKey) -> _Workspace | None:
        return self.workspace if key == WorkspaceKey("alice", "ws") else None


def test_prompt_gets_editor_snippets_and_retrieved_chunks_once_within_the_budget() -> None:
    workspace = _Workspace(
        [
            Hit("shop/billing.py", 1, 3, "def total(items):\n    return sum(items)", 0.03),
            Hit("shop/tax.py", 1, 2, "RATE = 0.2", 0.02),
        ]
    )
    retriever = PromptRetriever(_Registry(workspace), RetrievalConfig())  # type: ignore[arg-type]
    request = pb.CompleteRequest(
        workspace_id="ws",
        file_path="main.py",
        language="python",
        prefix="from shop.billing import total\nprint(total(",
        cursor=pb.Position(line=1, character=12),
        context=pb.ContextOptions(
            retrieval_token_budget=30,
            snippets=[
                # The same function as the first hit, as the editor has it now.
                _snippet(
                    "recent_edit",
                    "shop/billing.py",
                    (1, 4),
                    "def total(items):\n    return sum(i.price for i in items)",
                    0.5,
                ),
                _snippet("open_document", "shop/cart.py", (1, 2), "class Cart: ...", 0.3),
            ],
        ),
    )
    rendered = asyncio.run(retriever.context_for("alice", request, _encode, prompt_budget=1000))
    assert [(s.kind, s.path) for s in rendered.sources] == [
        ("recent_edit", "shop/billing.py"),
        ("open_document", "shop/cart.py"),
        ("retrieval", "shop/tax.py"),
    ]
    assert rendered.text.count("def total") == 1 and "i.price" in rendered.text
    assert rendered.tokens <= 30
    assert workspace.excluded == [("main.py", (1, 2))]
    # Another tenant naming the same workspace id gets its own snippets, nothing retrieved.
    other = asyncio.run(retriever.context_for("mallory", request, _encode, prompt_budget=1000))
    assert "retrieval" not in [s.kind for s in other.sources] and other.sources
    assert len(workspace.excluded) == 1
    # Retrieval off: the editor's snippets still go in, alone; a smaller budget takes fewer.
    request.context.disable_retrieval = True
    request.context.retrieval_token_budget = 14
    alone = asyncio.run(retriever.context_for("alice", request, _encode, prompt_budget=1000))
    assert [s.kind for s in alone.sources] == ["recent_edit"]
    assert len(workspace.excluded) == 1


class _SlowWorkspace(_Workspace):
    def search(self, query: str, k: int, path: str | None, lines: Any) -> list[Hit]:
        time.sleep(0.5)
        return super().search(query, k, path, lines)


def test_a_slow_search_costs_the_completion_its_context_not_its_time() -> None:
    workspace = _SlowWorkspace([Hit("shop/tax.py", 1, 2, "RATE = 0.2", 0.02)])
    retriever = PromptRetriever(
        _Registry(workspace),  # type: ignore[arg-type]
        RetrievalConfig(timeout_s=0.05),
    )
    request = pb.CompleteRequest(
        workspace_id="ws", file_path="main.py", language="python", prefix="tax = RATE *"
    )

    async def timed() -> tuple[Any, float]:
        started = time.perf_counter()
        rendered = await retriever.context_for("alice", request, _encode, prompt_budget=1000)
        return rendered, time.perf_counter() - started

    rendered, seconds = asyncio.run(timed())
    assert rendered.sources == []
    assert seconds < 0.4  # the deadline (0.05 s), not the 0.5 s search, set the pace
