"""Settings of the language server, sent by the editor as `initializationOptions`.

Keys are camelCase on the wire (``servingAddress``); a bad value is reported once and the default
is kept, so a typo in an editor config never stops completions.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Any

from quill import envs
from quill.retention_checks import DEFAULT_CHECKS_S

logger = logging.getLogger(__name__)

COMPLETION_MODES = ("auto", "single", "multi")


@dataclass
class Settings:
    # host:port of the serving layer.
    serving_address: str = dataclasses.field(default_factory=envs.serving_address)
    # "auto" decides single- or multi-line from the cursor; "single"/"multi" force one.
    completion_mode: str = "auto"
    # 0: the serving layer's default for the mode.
    max_tokens: int = 0
    # Documents larger than this (UTF-8 bytes) get no completions.
    max_document_bytes: int = 2_000_000
    # Characters before and after the cursor sent to serving.
    max_prefix_chars: int = 16_000
    max_suffix_chars: int = 4_000
    # Deadline of one completion RPC, in seconds.
    request_timeout_s: float = 10.0
    # Wait this long after a request before asking serving; a newer request for the same
    # document in the meantime replaces it without a model call. 0: editors debounce already
    # (Neovim waits 200 ms, VS Code has its own delay).
    debounce_ms: int = 0
    # Multi-line requests wait this much longer before asking serving (a newer keystroke in the
    # meantime replaces them without a model call): a block is only worth its tokens when the
    # user has stopped typing for a moment.
    multi_line_delay_ms: int = 400
    # Learn how long this user pauses and how long serving takes to answer, and send an
    # automatic request only when its answer is likely on screen before the next keystroke
    # (lsp_server/completion/timing.py); until enough is learnt, debounceMs and
    # multiLineDelayMs apply.
    # Off by default: on 2 CPU cores it cut the share of tokens wasted by a fifth to a third,
    # but cost 9-27% of the suggestions (docs/benchmarks.md).
    adaptive_timing: bool = False
    # The chance, from that history, that the answer arrives in time, at or above which the
    # request goes out.
    min_chance_in_time: float = 0.5
    # Repository retrieval: sync the workspace's files to serving and let it put relevant
    # chunks of other files into prompts.
    retrieval: bool = True
    # Prompt tokens retrieved chunks may take; 0: serving's default (512).
    retrieval_token_budget: int = 0
    # Larger workspace files are not synced.
    max_file_bytes: int = 1_000_000
    # Multi-line: answer with the first line as soon as it is written while the block goes on
    # generating; the editor's next request (after accepting or typing it) gets the block from
    # the same generation. Off: wait for the whole block.
    stream_first_line: bool = True
    # Prompt context from the editor itself (lsp_server/completion/snippets.py): windows of the
    # other open documents and the regions edited recently that are most similar to the code at
    # the cursor, sent with each request and placed by serving beside the retrieved chunks,
    # within retrievalTokenBudget.
    context_open_documents: bool = True
    context_recent_edits: bool = True
    # Seconds after a suggestion is first accepted at which the language server checks how much
    # of it is still in the document and reports it (lsp_server/retention.py); [] turns the
    # checks off. Each one of quill/retention_checks.py's CHECK_DELAYS_S, ascending, at most 5.
    retention_checks_s: list[int] = dataclasses.field(
        default_factory=lambda: list(DEFAULT_CHECKS_S)
    )
    # Repair: the Python interpreter whose environment Jedi completes against ("": the
    # workspace's .venv if it has one, else the environment Jedi finds itself).
    python_path: str = ""
    # Candidate patches to sample per repair; 0: serving's default.
    repair_budget: int = 0
    # How long the completion engine may take per query (serving accepts the token after it).
    repair_engine_deadline_s: float = 2.0
    # Deadline of a whole repair, in seconds.
    repair_timeout_s: float = 300.0
    # Regions longer than this many lines are refused.
    repair_max_lines: int = 30


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_FIELDS = {_camel(f.name): f for f in dataclasses.fields(Settings)}


def parse_settings(options: Any) -> tuple[Settings, list[str]]:
    """Build settings from initializationOptions; returns them with a list of problems."""
    settings = Settings()
    problems: list[str] = []
    if options is None:
        return settings, problems
    if not isinstance(options, dict):
        return settings, [f"initializationOptions must be an object, not {type(options).__name__}"]
    for key, value in options.items():
        spec = _FIELDS.get(key)
        if spec is None:
            problems.append(f"unknown setting {key!r}")
            continue
        default = getattr(settings, spec.name)
        try:
            coerced = _coerce(value, default)
        except (TypeError, ValueError):
            problems.append(f"setting {key!r} must be a {type(default).__name__}, got {value!r}")
            continue
        setattr(settings, spec.name, coerced)
    if settings.completion_mode not in COMPLETION_MODES:
        problems.append(f"completionMode must be one of {', '.join(COMPLETION_MODES)}")
        settings.completion_mode = "auto"
    if not re.fullmatch(r"[\w.\-\[\]:]+:\d+", settings.serving_address):
        problems.append(f"servingAddress {settings.serving_address!r} is not host:port")
        settings.serving_address = envs.serving_address()
    for name in (
        "max_tokens",
        "max_document_bytes",
        "max_prefix_chars",
        "max_suffix_chars",
        "debounce_ms",
        "multi_line_delay_ms",
        "repair_budget",
    ):
        if getattr(settings, name) < 0:
            problems.append(f"{_camel(name)} must not be negative")
            setattr(settings, name, getattr(Settings(), name))
    for name in ("request_timeout_s", "repair_engine_deadline_s", "repair_timeout_s"):
        if getattr(settings, name) <= 0:
            problems.append(f"{_camel(name)} must be positive")
            setattr(settings, name, getattr(Settings(), name))
    if not 0.0 <= settings.min_chance_in_time < 1.0:
        problems.append("minChanceInTime must be at least 0 and below 1")
        settings.min_chance_in_time = Settings().min_chance_in_time
    if settings.repair_max_lines < 1:
        problems.append("repairMaxLines must be at least 1")
        settings.repair_max_lines = Settings().repair_max_lines
    for name in ("retrieval_token_budget", "max_file_bytes"):
        if getattr(settings, name) < 0:
            problems.append(f"{_camel(name)} must not be negative")
            setattr(settings, name, getattr(Settings(), name))
    return settings, problems


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(default, list):  # lists of whole numbers (retentionChecksS)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise TypeError
        return list(value)
    if isinstance(default, bool) or isinstance(value, bool):
        if not (isinstance(default, bool) and isinstance(value, bool)):
            raise TypeError
        return value
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise TypeError
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if not isinstance(value, str):
        raise TypeError
    return value
