"""Fill-in-the-middle prompt templates per model family.

Each template is a sequence of literal marker text and the two holes, so the token budget can cut
the prefix (from the left) and the suffix (from the right) without ever cutting a marker. Models
without FIM tokens (the default SmolLM2) use the prefix-only template; the suffix then only
serves post-processing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "{prefix}"
SUFFIX = "{suffix}"


@dataclass(frozen=True)
class FimTemplate:
    name: str
    # Literal marker strings and the PREFIX / SUFFIX holes, in prompt order.
    parts: tuple[str, ...]
    # Extra stop strings the family emits at the end of a middle (EOS is handled by the engine).
    stop: tuple[str, ...] = ()

    @property
    def uses_suffix(self) -> bool:
        return SUFFIX in self.parts

    def render(self, prefix: str, suffix: str) -> str:
        return "".join(prefix if p == PREFIX else suffix if p == SUFFIX else p for p in self.parts)

    def token_ids(
        self,
        prefix: str,
        suffix: str,
        encode: Callable[[str], list[int]],
        budget: int,
        suffix_share: float = 0.25,
        preamble: Sequence[int] = (),
    ) -> tuple[list[int], bool]:
        """Prompt tokens within `budget`; returns them and whether anything was cut.

        The suffix gets at most `suffix_share` of the budget (what follows the cursor matters
        less than what precedes it); the prefix gets the rest, nearest text first. `preamble`
        (retrieved context, serving/context.py) goes right before the prefix and is taken out of
        the budget first.
        """
        markers = {p: encode(p) for p in self.parts if p not in (PREFIX, SUFFIX)}
        room = max(1, budget - len(preamble) - sum(len(ids) for ids in markers.values()))
        # Tokenizing more characters than could ever fit is wasted work on huge files.
        window = room * 8
        suffix_ids = encode(suffix[:window]) if self.uses_suffix and suffix else []
        suffix_room = min(len(suffix_ids), int(room * suffix_share))
        prefix_ids = encode(prefix[-window:]) if prefix else []
        prefix_room = room - suffix_room
        truncated = (
            len(prefix) > window
            or len(prefix_ids) > prefix_room
            or (self.uses_suffix and (len(suffix) > window or len(suffix_ids) > suffix_room))
        )
        prefix_ids = prefix_ids[-prefix_room:] if prefix_room else []
        suffix_ids = suffix_ids[:suffix_room]
        ids: list[int] = []
        for part in self.parts:
            if part == PREFIX:
                ids += preamble
                ids += prefix_ids
            elif part == SUFFIX:
                ids += suffix_ids
            else:
                ids += markers[part]
        return ids, truncated


TEMPLATES: dict[str, FimTemplate] = {
    template.name: template
    for template in (
        FimTemplate("prefix-only", (PREFIX,)),
        FimTemplate(
            "starcoder",
            ("<fim_prefix>", PREFIX, "<fim_suffix>", SUFFIX, "<fim_middle>"),
            stop=("<|endoftext|>", "<file_sep>"),
        ),
        FimTemplate(
            "qwen2.5-coder",
            ("<|fim_prefix|>", PREFIX, "<|fim_suffix|>", SUFFIX, "<|fim_middle|>"),
            stop=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>"),
        ),
        FimTemplate(
            "deepseek-coder",
            ("<｜fim▁begin｜>", PREFIX, "<｜fim▁hole｜>", SUFFIX, "<｜fim▁end｜>"),
            stop=("<｜end▁of▁sentence｜>",),
        ),
        FimTemplate("codellama", ("<PRE> ", PREFIX, " <SUF>", SUFFIX, " <MID>"), stop=(" <EOT>",)),
        FimTemplate("codestral", ("[SUFFIX]", SUFFIX, "[PREFIX]", PREFIX), stop=("</s>",)),
    )
}

# (substring of the lower-cased model name or config model_type, template), first match wins.
_NAME_RULES = (
    ("starcoder", "starcoder"),
    ("qwen2.5-coder", "qwen2.5-coder"),
    ("qwen2_5-coder", "qwen2.5-coder"),
    ("deepseek-coder", "deepseek-coder"),
    ("codellama", "codellama"),
    ("code-llama", "codellama"),
    ("codestral", "codestral"),
)


def choose_template(setting: str, model: str, served_name: str = "") -> FimTemplate:
    """`setting` is a template name, "none" (prefix-only) or "auto" (from the model's names and,
    for a local folder, its config.json)."""
    if setting != "auto":
        key = "prefix-only" if setting == "none" else setting
        if key not in TEMPLATES:
            raise ValueError(f"unknown FIM template {setting!r}; known: {', '.join(TEMPLATES)}")
        return TEMPLATES[key]
    haystack = f"{model} {served_name}".lower()
    config = Path(model) / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
            haystack += " " + str(data.get("model_type", "")).lower()
            haystack += " " + str(data.get("_name_or_path", "")).lower()
        except (OSError, ValueError):
            logger.warning("cannot read %s; using the model name only", config)
    for needle, name in _NAME_RULES:
        if needle in haystack:
            return TEMPLATES[name]
    return TEMPLATES["prefix-only"]
