"""`quill bench engine`'s settings: parsed as EngineConfig fields, bad ones refused clearly."""

from __future__ import annotations

import argparse

import pytest

from quill_cli.bench.engine import DEFAULT_SETTINGS, parse_setting, run
from serving.config import EngineConfig


def test_settings_parse_into_engine_config_fields() -> None:
    assert parse_setting('bf16:dtype="bfloat16",enforce_eager=true') == (
        "bf16",
        {"dtype": "bfloat16", "enforce_eager": True},
    )
    assert parse_setting("plain:") == ("plain", {})
    for spec in DEFAULT_SETTINGS:
        _, fields = parse_setting(spec)
        EngineConfig(model="m", **fields)  # every default names real fields


@pytest.mark.parametrize(
    "spec", [":dtype=1", "x:dtype", 'x:dtype="float32",eager=tru', "x:speed=1", 'x:model="m"']
)
def test_a_bad_setting_is_refused_before_any_engine_starts(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(setting=[spec])
    assert run(args) == 2
    assert "quill bench engine:" in capsys.readouterr().err
