from __future__ import annotations

from serving.context import ContextBlock, line_comment, render_context


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
