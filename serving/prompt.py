"""Prompt building for inline completion.

Today: prefix-only prompts (the default SmolLM2 has no fill-in-the-middle tokens), cut to a
token budget from the left so the text nearest the cursor always stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Characters per token is at least ~1 for code tokenizers; tokenizing more than this many
# characters per budget token would be wasted work on huge files.
_CHARS_PER_TOKEN_CEILING = 8


@dataclass(frozen=True)
class Prompt:
    token_ids: list[int]
    # True when the prefix did not fit and its beginning was dropped.
    truncated: bool


def prompt_token_budget(max_model_len: int, max_tokens: int, max_prompt_tokens: int) -> int:
    """Tokens the prompt may use so that prompt plus generation fit the context window."""
    return max(1, min(max_prompt_tokens, max_model_len - max_tokens))


def build_prefix_prompt(prefix: str, encode: Callable[[str], list[int]], budget: int) -> Prompt:
    window = prefix[-budget * _CHARS_PER_TOKEN_CEILING :]
    ids = encode(window)
    truncated = len(window) < len(prefix) or len(ids) > budget
    return Prompt(token_ids=ids[-budget:], truncated=truncated)
