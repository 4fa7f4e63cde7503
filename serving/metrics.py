"""Prometheus metrics of the serving process.

Labels stay bounded: RPC names, modes, outcomes and status codes only; never users, files or
workspaces. vLLM's own engine metrics (``vllm:*``) register in the same default registry, so
one /metrics endpoint shows both.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

# Inline completion latencies cluster between 50 ms and a few seconds on CPUs and GPUs alike.
_LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1,
    1.5,
    2,
    3,
    5,
    10,
    30,
)

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


def start_metrics_server(address: str) -> None:
    """Serve the default registry (ours and vLLM's metrics) on http://address/metrics."""
    host, _, port = address.rpartition(":")
    try:
        start_http_server(int(port), addr=host or "127.0.0.1", registry=REGISTRY)
    except OSError as error:
        raise OSError(f"cannot serve metrics on {address}: {error}") from error
    logger.info("metrics on http://%s/metrics", address)
