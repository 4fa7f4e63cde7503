"""Generated stubs match the .proto, and the CLI parses what users type."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from quill_cli.commands.complete import _parse_location
from quill_cli.commands.serve import _parse_engine_arg
from quill_cli.main import build_parser
from tests.conftest import ROOT


def test_generated_stubs_match_the_proto() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_location_is_file_line_column_one_based() -> None:
    assert _parse_location("src/a.py:3:7") == (Path("src/a.py"), 3, 7)
    assert _parse_location("C:/x/a.py:1:1") == (Path("C:/x/a.py"), 1, 1)
    for bad in ("a.py", "a.py:3", "a.py:0:1", "a.py:x:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _parse_location(bad)


def test_engine_args_pass_through_as_json_or_text() -> None:
    assert _parse_engine_arg("max-num-seqs=8") == ("max_num_seqs", 8)
    assert _parse_engine_arg("quantization=awq") == ("quantization", "awq")
    assert _parse_engine_arg("enable_chunked_prefill=false") == ("enable_chunked_prefill", False)
    with pytest.raises(argparse.ArgumentTypeError):
        _parse_engine_arg("nothing")


@pytest.mark.parametrize("bench", ["latency", "quality", "typing"])
def test_every_bench_subcommand_takes_json(bench: str) -> None:
    args = build_parser().parse_args(["bench", bench, "--json", "out.json"])
    assert args.json == Path("out.json")


def test_engine_arguments_reach_vllm_unchanged() -> None:
    from serving.config import EngineConfig
    from serving.engine.vllm_engine import build_engine_args

    args = build_engine_args(
        EngineConfig(
            model="Qwen/Qwen2.5-Coder-7B",
            dtype="bfloat16",
            tensor_parallel_size=2,
            gpu_memory_utilization=0.85,
            max_model_len=16384,
            kv_cache_gib=None,
            extra_engine_args={"quantization": "awq", "max_num_seqs": 64},
        )
    )
    assert args["model"] == "Qwen/Qwen2.5-Coder-7B"
    assert args["tensor_parallel_size"] == 2
    assert args["dtype"] == "bfloat16"
    assert args["gpu_memory_utilization"] == 0.85
    assert args["max_model_len"] == 16384
    assert args["quantization"] == "awq" and args["max_num_seqs"] == 64
    assert "kv_cache_memory_bytes" not in args
    assert args["scheduling_policy"] == "priority"
