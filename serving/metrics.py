"""Prometheus metrics of the serving process.

Labels stay bounded: RPC names, modes, outcomes and status codes only; never users, files or
workspaces. vLLM's own engine metrics (``vllm:*``) register in the same default registry, so
one /metrics endpoint shows both.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

# Inline completion latencies cluster between 50 ms and a few seconds on CPUs and GPUs alike;
# the small buckets resolve the cheap stages (prompt building, post-processing, queue wait).
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1, 1.5, 2, 3, 5, 10, 30,
)  # fmt: skip

RPC_REQUESTS = Counter(
    "quill_rpc_requests", "gRPC requests by method and status code.", ["method", "code"]
)
COMPLETIONS = Counter(
    "quill_completions",
    "Complete requests by mode and outcome (ok, cancelled, error).",
    ["mode", "outcome"],
)
COMPLETION_TOKENS = Counter(
    "quill_completion_tokens", "Tokens generated for Complete requests, cancelled ones included."
)
WASTED_TOKENS = Counter(
    "quill_wasted_tokens",
    "Tokens generated for Complete requests the client cancelled before the answer was done.",
)
PROMPT_TOKENS = Counter("quill_prompt_tokens", "Prompt tokens of Complete requests.")
ENGINE_ABORTS = Counter(
    "quill_engine_aborts",
    "Engine requests aborted before they finished (client cancelled or suggestion complete).",
    ["reason"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "quill_time_to_first_token_seconds",
    "From the RPC arriving to the first generated text.",
    ["mode"],
    buckets=_LATENCY_BUCKETS,
)
REQUEST_DURATION = Histogram(
    "quill_request_duration_seconds",
    "From the RPC arriving to its last message.",
    ["method"],
    buckets=_LATENCY_BUCKETS,
)
ENGINE_READY = Gauge("quill_engine_ready", "1 when the engine is loaded and serving, else 0.")
STORAGE_ERRORS = Counter(
    "quill_storage_errors",
    "Writes to serving's data folder that failed, by what was written (sync: a workspace's "
    "files; index_save: its retrieval index) and reason (no_space: the folder is full; other).",
    ["operation", "reason"],
)


def start_metrics_server(address: str) -> None:
    """Serve the default registry (ours and vLLM's metrics) on http://address/metrics."""
    host, _, port = address.rpartition(":")
    try:
        start_http_server(int(port), addr=host or "127.0.0.1", registry=REGISTRY)
    except OSError as error:
        raise OSError(f"cannot serve metrics on {address}: {error}") from error
    logger.info("metrics on http://%s/metrics", address)


# Languages get their own label value; anything else is "other", so clients cannot grow the
# number of series by sending made-up language ids.
KNOWN_LANGUAGES = frozenset(
    {
        "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go",
        "java", "c", "cpp", "csharp", "rust", "ruby", "php", "kotlin", "swift", "scala",
        "shellscript", "lua", "sql", "html", "css", "json", "yaml", "markdown",
    }
)  # fmt: skip


def language_label(language: str) -> str:
    return language if language in KNOWN_LANGUAGES else "other"


STAGE_DURATION = Histogram(
    "quill_stage_duration_seconds",
    "Latency of each stage of a completion; client_end_to_end is what the language server saw.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
SUGGESTIONS_SHOWN = Counter(
    "quill_suggestions_shown", "Suggestions shown in editors.", ["language", "mode"]
)
SUGGESTIONS_ACCEPTED = Counter(
    "quill_suggestions_accepted", "Suggestions accepted whole.", ["language", "mode"]
)
SUGGESTIONS_PARTIALLY_ACCEPTED = Counter(
    "quill_suggestions_partially_accepted",
    "Suggestions of which only a part was accepted.",
    ["language", "mode"],
)
SUGGESTIONS_REJECTED = Counter(
    "quill_suggestions_rejected",
    "Suggestions dismissed or superseded without acceptance.",
    ["language", "mode"],
)
SUGGESTION_CHARS_SHOWN = Counter(
    "quill_suggestion_chars_shown", "Characters of shown suggestions.", ["language", "mode"]
)
SUGGESTION_CHARS_ACCEPTED = Counter(
    "quill_suggestion_chars_accepted",
    "Characters inserted by accepting suggestions, whole or in part.",
    ["language", "mode"],
)
CHARS_TYPED = Counter(
    "quill_chars_typed", "Characters users typed themselves (not from suggestions).", ["language"]
)
EVENTS_REJECTED = Counter(
    "quill_events_rejected",
    "Reported events that were rejected or clamped (unknown id, duplicate, too large, flood).",
    ["reason"],
)
EVENTS_UNDELIVERED = Counter(
    "quill_events_undelivered", "Events language servers reported they could not deliver."
)
REPAIRS = Counter(
    "quill_repairs", "Repair requests by mode (guided, unguided) and outcome.", ["mode", "outcome"]
)
REPAIR_CANDIDATES = Counter(
    "quill_repair_candidates",
    "Distinct candidate patches streamed, by mode and validity (parses and names resolve).",
    ["mode", "validity"],
)
REPAIR_ENGINE_QUERIES = Counter(
    "quill_repair_engine_queries", "Completion-engine queries sent to clients by guided repair."
)
REPAIR_PRUNED_TOKENS = Counter(
    "quill_repair_pruned_tokens", "Tokens guided repair rejected as infeasible."
)
API_TOOL_CALLS = Counter(
    "quill_api_tool_calls",
    "API searches run inside generation by trigger (toolcoder, auto) and outcome.",
    ["trigger", "outcome"],
)
API_TOOL_FAILURES = Counter(
    "quill_api_tool_failures",
    "API tool calls that failed (timeout, error, unclosed, empty, capped); generation went on "
    "without the tool.",
    ["trigger", "outcome"],
)
SUGGESTION_CHARS_RETAINED = Counter(
    "quill_suggestion_chars_retained",
    "Characters of accepted suggestions still in the document at a check `after` the first "
    "acceptance (longest common subsequence of the accepted text and its region then).",
    ["language", "mode", "after"],
)
SUGGESTION_CHARS_CHECKED = Counter(
    "quill_suggestion_chars_checked",
    "Characters accepted of suggestions whose retention was checked at `after` (the "
    "denominator of the retention rate).",
    ["language", "mode", "after"],
)
# Attribution: which context went into a suggestion's prompt (`context`: the kinds of
# ContextSource joined by "+", or "none"; bounded by serving.attribution) and how the item
# concerned was produced (`origin`: fresh, type_ahead, reused, streamed, unspecified).
CONTEXT_SUGGESTIONS_SHOWN = Counter(
    "quill_context_suggestions_shown",
    "Suggestions shown, by the context in their prompt and how the item was produced.",
    ["context", "origin"],
)
CONTEXT_SUGGESTIONS_ACCEPTED = Counter(
    "quill_context_suggestions_accepted",
    "Suggestions accepted (whole or a first part), by context and origin.",
    ["context", "origin"],
)
CONTEXT_CHARS_RETAINED = Counter(
    "quill_context_chars_retained",
    "Characters of accepted suggestions still in the document at a check, by context and origin.",
    ["context", "origin", "after"],
)
CONTEXT_CHARS_CHECKED = Counter(
    "quill_context_chars_checked",
    "Characters accepted of suggestions checked for retention, by context and origin.",
    ["context", "origin", "after"],
)
