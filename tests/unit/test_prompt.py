from __future__ import annotations

from serving.prompt import build_prefix_prompt, prompt_token_budget


def encode(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_budget_leaves_room_for_generation() -> None:
    assert prompt_token_budget(max_model_len=100, max_tokens=30, max_prompt_tokens=2048) == 70
    assert prompt_token_budget(max_model_len=8192, max_tokens=30, max_prompt_tokens=2048) == 2048
    assert prompt_token_budget(max_model_len=10, max_tokens=30, max_prompt_tokens=2048) == 1


def test_prompt_keeps_the_text_nearest_the_cursor() -> None:
    prompt = build_prefix_prompt("abcdefghij", encode, budget=4)
    assert prompt.token_ids == encode("ghij")
    assert prompt.truncated


def test_short_prompt_is_whole() -> None:
    prompt = build_prefix_prompt("def f():", encode, budget=100)
    assert prompt.token_ids == encode("def f():")
    assert not prompt.truncated


def test_huge_prefix_is_not_tokenized_whole() -> None:
    seen: list[int] = []

    def counting_encode(text: str) -> list[int]:
        seen.append(len(text))
        return encode(text)

    build_prefix_prompt("x" * 10_000_000, counting_encode, budget=100)
    assert seen[0] <= 100 * 8
