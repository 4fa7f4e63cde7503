"""`quill serve`'s flags come from the config dataclasses and build the configs back."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from quill_cli.config_flags import add_config_flags, config_from_flags
from quill_cli.main import build_parser
from serving.config import EngineConfig, ServingConfig, option
from tests.conftest import ROOT


def _config(*flags: str) -> ServingConfig:
    args = build_parser().parse_args(["serve", *flags])
    return config_from_flags(ServingConfig, args, {"engine.model": "m"})


def test_without_flags_the_config_is_the_dataclasses_defaults() -> None:
    assert _config() == ServingConfig(engine=EngineConfig(model="m"))


def test_every_flag_of_before_keeps_its_name_and_reaches_its_field() -> None:
    config = _config(
        "--served-model-name", "coder",
        "--address", "0.0.0.0:6000",
        "--metrics-address", "",
        "--dtype", "bfloat16",
        "--tensor-parallel-size", "2",
        "--gpu-memory-utilization", "0.5",
        "--kv-cache-gib", "3",
        "--max-model-len", "4096",
        "--enforce-eager",
        "--engine-worker-process",
        "--max-prompt-tokens", "1000",
        "--fim-template", "none",
        "--data-dir", "/tmp/quill-data",
        "--no-retrieval",
        "--retrieval-token-budget", "100",
        "--embedding-model", "/models/minilm",
        "--repair-prompt-style", "hint",
        "--api-auto-mode", "off",
        "--shutdown-grace", "2.5",
    )  # fmt: skip
    engine = config.engine
    assert (engine.served_model_name, engine.dtype, engine.tensor_parallel_size) == (
        "coder",
        "bfloat16",
        2,
    )
    assert (engine.gpu_memory_utilization, engine.kv_cache_gib, engine.max_model_len) == (
        0.5,
        3.0,
        4096,
    )
    assert engine.enforce_eager is True and engine.engine_worker_process is True
    assert (config.address, config.metrics_address, config.shutdown_grace_s) == (
        "0.0.0.0:6000",
        "",
        2.5,
    )
    assert (config.completion.max_prompt_tokens, config.completion.fim_template) == (1000, "none")
    assert config.retrieval.enabled is False
    assert config.retrieval.data_dir == Path("/tmp/quill-data")
    assert config.retrieval.token_budget == 100
    assert config.retrieval.embedding_model == "/models/minilm"
    assert config.repair.prompt_style == "hint" and config.api_auto_mode == "off"


def test_engine_args_and_the_model_are_set_by_the_command() -> None:
    args = build_parser().parse_args(
        ["serve", "--model", "x", "--engine-arg", "max_num_seqs=8", "--no-enforce-eager"]
    )
    assert args.model == "x" and args.engine_arg == [("max_num_seqs", 8)]
    config = config_from_flags(
        ServingConfig, args, {"engine.model": "/resolved", "engine.extra_engine_args": {"a": 1}}
    )
    assert config.engine.model == "/resolved" and config.engine.extra_engine_args == {"a": 1}
    assert config.engine.enforce_eager is False


def test_new_fields_are_flags_too_and_choices_are_enforced() -> None:
    config = _config("--repair-max-budget", "8", "--max-sync-files", "10", "--retrieval-top-k", "3")
    assert (config.repair.max_budget, config.limits.max_sync_files) == (8, 10)
    assert config.retrieval.top_k == 3
    with pytest.raises(SystemExit):
        _config("--repair-prompt-style", "poetry")
    with pytest.raises(SystemExit):
        _config("--max-sync-files", "many")


def test_choices_in_the_config_are_the_ones_the_code_knows() -> None:
    from serving.api_search.tools import AUTO_MODES
    from serving.config import RepairConfig
    from serving.repair.prompt import PROMPT_STYLES

    def choices(config: type, name: str) -> set[str]:
        return set(
            next(f for f in dataclasses.fields(config) if f.name == name).metadata["choices"]
        )

    assert choices(RepairConfig, "prompt_style") == set(PROMPT_STYLES)
    assert choices(ServingConfig, "api_auto_mode") == set(AUTO_MODES)


@dataclasses.dataclass
class _Pool:
    depth_m: float = option(2.5, help="how deep, 100% sure")


@dataclasses.dataclass
class _Site:
    pool: _Pool = dataclasses.field(default_factory=_Pool, metadata={"flag_prefix": "pool-"})
    lit: bool = option(False, help="lights on")


def test_help_comes_from_the_field_and_names_follow_the_section_prefix() -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Site)
    assert "how deep, 100% sure (default: 2.5)" in " ".join(parser.format_help().split())
    built = config_from_flags(_Site, parser.parse_args(["--pool-depth-m", "4", "--lit"]), {})
    assert built == _Site(_Pool(4.0), True)


def test_other_commands_never_import_the_serving_configs() -> None:
    # `quill lsp` starts with every keystroke session of an editor: serve's flags cost it nothing.
    code = (
        "import sys; from quill_cli.main import build_parser; "
        "build_parser().parse_args(['lsp']); print('serving.config' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.stdout.strip() == "False", result.stderr
