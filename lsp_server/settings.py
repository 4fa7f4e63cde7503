"""Settings of the language server, sent by the editor as `initializationOptions`.

Keys are camelCase on the wire (``servingAddress``); each field declares its limits once
(`checked`), and lsp_server/options.py enforces types and limits in one pass. A bad value is
reported once and its default is kept, so a typo in an editor config never stops completions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lsp_server.options import checked, checked_factory, structure_leniently
from quill import envs
from quill.retention_checks import DEFAULT_CHECKS_S

COMPLETION_MODES = ("auto", "single", "multi")
# The largest document, file or prompt part the language server will hold: the gRPC messages to
# serving are capped at 64 MiB.
_MAX_BYTES = 64_000_000


@dataclass
class Settings:
    # host:port of the serving layer.
    serving_address: str = checked_factory(
        envs.serving_address, pattern=r"[\w.\-\[\]:]+:\d+", pattern_name="host:port"
    )
    # Bearer token for serving, or a file holding it. Neither: QUILL_TOKEN, else (for a serving
    # on this machine) the local token `quill serve` created (docs/security.md).
    serving_token: str = checked("", max_chars=4096)
    serving_token_file: str = checked("", max_chars=4096)
    # TLS to serving; the CA file ("" : the system's roots) verifies serving's certificate.
    serving_tls: bool = False
    serving_ca_file: str = checked("", max_chars=4096)
    # Mutual TLS: this client's certificate chain and key (PEM files).
    serving_client_cert: str = checked("", max_chars=4096)
    serving_client_key: str = checked("", max_chars=4096)
    # "auto" decides single- or multi-line from the cursor; "single"/"multi" force one.
    completion_mode: str = checked("auto", choices=COMPLETION_MODES)
    # 0: the serving layer's default for the mode.
    max_tokens: int = checked(0, low=0, high=8192)
    # Documents larger than this (UTF-8 bytes) get no completions.
    max_document_bytes: int = checked(2_000_000, low=0, high=_MAX_BYTES)
    # Characters before and after the cursor sent to serving.
    max_prefix_chars: int = checked(16_000, low=0, high=_MAX_BYTES)
    max_suffix_chars: int = checked(4_000, low=0, high=_MAX_BYTES)
    # Deadline of one completion RPC, in seconds.
    request_timeout_s: float = checked(10.0, low=0, above_low=True, high=3600)
    # Wait this long after a request before asking serving; a newer request for the same
    # document in the meantime replaces it without a model call. 0: editors debounce already
    # (Neovim waits 200 ms, VS Code has its own delay).
    debounce_ms: int = checked(0, low=0, high=10_000)
    # Multi-line requests wait this much longer before asking serving (a newer keystroke in the
    # meantime replaces them without a model call): a block is only worth its tokens when the
    # user has stopped typing for a moment.
    multi_line_delay_ms: int = checked(400, low=0, high=10_000)
    # Learn how long this user pauses and how long serving takes to answer, and send an
    # automatic request only when its answer is likely on screen before the next keystroke
    # (lsp_server/completion/timing.py); until enough is learnt, debounceMs and
    # multiLineDelayMs apply. On by default since issue #18: at a GPU's pace it is what keeps
    # the tokens never shown under 5% (docs/benchmarks.md, "Waste at a GPU's pace").
    adaptive_timing: bool = True
    # The chance, from that history, that the answer arrives in time, at or above which the
    # request goes out: the waste it accepts (0.5 left 8% of tokens unshown at a GPU's pace,
    # 0.85 under 4%, for 6% and 15% fewer suggestions).
    min_chance_in_time: float = checked(0.85, low=0, high=1, below_high=True)
    # The longest an automatic request is held back for that chance (after debounceMs): a user
    # who has stopped this long is waiting for a suggestion, however slow serving is (on CPUs
    # the rule alone would wait several seconds). 0: no limit.
    max_hold_ms: int = checked(1000, low=0, high=60_000)
    # Repository retrieval: sync the workspace's files to serving and let it put relevant
    # chunks of other files into prompts.
    retrieval: bool = True
    # Prompt tokens retrieved chunks may take; 0: serving's default (512).
    retrieval_token_budget: int = checked(0, low=0, high=65_536)
    # Larger workspace files are not synced.
    max_file_bytes: int = checked(1_000_000, low=0, high=_MAX_BYTES)
    # Workspace sync stops at this many files, or this many bytes of their content (UTF-8),
    # and says so once: a huge folder opened by mistake is not read and uploaded whole.
    max_sync_files: int = checked(20_000, low=1, high=10_000_000)
    max_sync_bytes: int = checked(200_000_000, low=1, high=100_000_000_000)
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
    # checks off. Each one of quill/retention_checks.py's CHECK_DELAYS_S, ascending, at most 5
    # (checked when the checks start, lsp_server/features/retention.py).
    retention_checks_s: list[int] = field(default_factory=lambda: list(DEFAULT_CHECKS_S))
    # Repair: the Python interpreter whose environment Jedi completes against ("": the
    # workspace's .venv if it has one, else the environment Jedi finds itself).
    python_path: str = checked("", max_chars=4096)
    # Candidate patches to sample per repair; 0: serving's default.
    repair_budget: int = checked(0, low=0, high=1024)
    # How long the completion engine may take per query (serving accepts the token after it).
    repair_engine_deadline_s: float = checked(2.0, low=0, above_low=True, high=600)
    # Deadline of a whole repair, in seconds.
    repair_timeout_s: float = checked(300.0, low=0, above_low=True, high=86_400)
    # Regions longer than this many lines are refused.
    repair_max_lines: int = checked(30, low=1, high=100_000)
    # A shell command that runs the workspace's tests (`pytest -x -q tests/test_x.py`): each
    # candidate is tested in a temporary copy of the workspace, passing ones rank first, and
    # the original's failing output is shown to the model. "": candidates are not tested.
    repair_test_command: str = checked("", max_chars=100_000)
    # Seconds one run of the test command may take before it is killed.
    repair_test_timeout_s: float = checked(60.0, low=0, above_low=True, high=86_400)


def parse_settings(options: Any) -> tuple[Settings, list[str]]:
    """Build settings from initializationOptions; returns them with a list of problems."""
    return structure_leniently(options, Settings, "setting")
