"""The prompt's token budget; the prompt text itself comes from a template in serving/fim.py."""

from __future__ import annotations


def prompt_token_budget(max_model_len: int, max_tokens: int, max_prompt_tokens: int) -> int:
    """Tokens the prompt may use so that prompt plus generation fit the context window."""
    return max(1, min(max_prompt_tokens, max_model_len - max_tokens))
