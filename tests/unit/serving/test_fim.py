"""Prompt templates: exact text per family, budget, and the choice from the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.fim import TEMPLATES, choose_template
from serving.prompt import prompt_token_budget

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("prefix-only", "def add(a, b):\n    return "),
        ("starcoder",
         "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>"),
        ("qwen2.5-coder",
         "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n\nprint(add(1, 2))\n"
         "<|fim_middle|>"),
        ("deepseek-coder",
         "<｜fim▁begin｜>def add(a, b):\n    return <｜fim▁hole｜>\n\nprint(add(1, 2))\n"
         "<｜fim▁end｜>"),
        ("codellama", "<PRE> def add(a, b):\n    return  <SUF>\n\nprint(add(1, 2))\n <MID>"),
        ("codestral", "[SUFFIX]\n\nprint(add(1, 2))\n[PREFIX]def add(a, b):\n    return "),
    ],
)  # fmt: skip
def test_template_text_is_pinned(name: str, expected: str) -> None:
    assert TEMPLATES[name].render(PREFIX, SUFFIX) == expected


def encode(text: str) -> list[int]:
    """One token per character; markers (text in angle or square brackets) as one token."""
    markers = [p for t in TEMPLATES.values() for p in t.parts if p not in ("{prefix}", "{suffix}")]
    return [hash(text) % 100_000] if text in markers else [ord(c) for c in text]


def test_tokens_follow_the_template_and_the_budget() -> None:
    template = TEMPLATES["starcoder"]
    ids, truncated = template.token_ids("abcdefghij", "0123456789", encode, budget=11)
    # 3 markers + 8 tokens of room: the suffix gets 25% (2), the prefix the rest (6).
    assert ids == [
        *encode("<fim_prefix>"), *encode("efghij"),
        *encode("<fim_suffix>"), *encode("01"), *encode("<fim_middle>"),
    ]  # fmt: skip
    assert truncated
    ids, truncated = template.token_ids("ab", "c", encode, budget=100)
    assert ids == [*encode("<fim_prefix>"), 97, 98, *encode("<fim_suffix>"), 99,
                   *encode("<fim_middle>")]  # fmt: skip
    assert not truncated


def test_prefix_only_keeps_the_text_nearest_the_cursor() -> None:
    ids, truncated = TEMPLATES["prefix-only"].token_ids("abcdefghij", "ignored", encode, 4)
    assert ids == encode("ghij") and truncated


def test_huge_documents_are_not_tokenized_whole() -> None:
    seen: list[int] = []

    def counting(text: str) -> list[int]:
        seen.append(len(text))
        return encode(text)

    TEMPLATES["starcoder"].token_ids("x" * 10_000_000, "y" * 10_000_000, counting, budget=100)
    assert max(seen) <= 100 * 8


def test_budget_leaves_room_for_generation() -> None:
    assert prompt_token_budget(max_model_len=100, max_tokens=30, max_prompt_tokens=2048) == 70
    assert prompt_token_budget(max_model_len=8192, max_tokens=30, max_prompt_tokens=2048) == 2048
    assert prompt_token_budget(max_model_len=10, max_tokens=30, max_prompt_tokens=2048) == 1


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("bigcode/starcoder2-3b", "starcoder"),
        ("Qwen/Qwen2.5-Coder-1.5B", "qwen2.5-coder"),
        ("deepseek-ai/deepseek-coder-1.3b-base", "deepseek-coder"),
        ("codellama/CodeLlama-7b-hf", "codellama"),
        ("mistralai/Codestral-22B-v0.1", "codestral"),
        ("/models/SmolLM2-135M-Instruct-f32", "prefix-only"),
    ],
)
def test_auto_choice_from_the_model_name(model: str, expected: str) -> None:
    assert choose_template("auto", model).name == expected


def test_auto_choice_reads_a_local_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "starcoder2"}))
    assert choose_template("auto", str(tmp_path)).name == "starcoder"
    assert choose_template("none", "bigcode/starcoder2-3b").name == "prefix-only"
    with pytest.raises(ValueError, match="unknown FIM template"):
        choose_template("gpt", "x")
