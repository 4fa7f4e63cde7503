"""The engine boundary: serving depends on `Engine`; only `vllm_engine` imports vLLM."""

from serving.engine.base import Engine, EngineOutput, GenerationRequest

__all__ = ["Engine", "EngineOutput", "GenerationRequest"]
