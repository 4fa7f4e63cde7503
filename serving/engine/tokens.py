"""What every engine built on a Hugging Face tokenizer shares: its name, its context length, and
text to token ids and back (without special tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TokenizerBacked:
    def __init__(self, tokenizer: Any, model_name: str, max_model_len: int) -> None:
        self._tokenizer = tokenizer
        self._model_name = model_name
        self._max_model_len = max_model_len

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=True))
