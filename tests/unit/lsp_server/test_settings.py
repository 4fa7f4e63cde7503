from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from lsp_server.options import camel
from lsp_server.settings import Settings, parse_settings


def test_defaults_without_options() -> None:
    settings, problems = parse_settings(None)
    assert settings == Settings()
    assert problems == []


def test_camel_case_options_are_applied() -> None:
    settings, problems = parse_settings(
        {
            "servingAddress": "10.0.0.5:6000",
            "completionMode": "multi",
            "maxTokens": 64,
            "requestTimeoutS": 3,
        }
    )
    assert problems == []
    assert settings.serving_address == "10.0.0.5:6000"
    assert settings.completion_mode == "multi"
    assert settings.max_tokens == 64
    assert settings.request_timeout_s == 3.0


def test_bad_values_fall_back_to_defaults_with_problems() -> None:
    settings, problems = parse_settings(
        {
            "completionMode": "both",
            "maxTokens": "many",
            "servingAddress": "nowhere",
            "maxDocumentBytes": -1,
            "colour": "red",
            "requestTimeoutS": 0,
        }
    )
    assert settings == Settings()
    assert len(problems) == 6


def test_non_object_options() -> None:
    settings, problems = parse_settings(["x"])
    assert settings == Settings() and len(problems) == 1


def test_boolean_settings_take_only_booleans() -> None:
    settings, problems = parse_settings({"streamFirstLine": False})
    assert problems == [] and settings.stream_first_line is False
    settings, problems = parse_settings({"streamFirstLine": "no"})
    assert settings.stream_first_line is True and len(problems) == 1
    settings, problems = parse_settings({"maxTokens": True})  # not an int
    assert settings.max_tokens == 0 and len(problems) == 1


NUMERIC_SETTINGS = [
    camel(f.name)
    for f in dataclasses.fields(Settings)
    if typing.get_type_hints(Settings)[f.name] in (int, float)
]
BAD_NUMBERS = [
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    2**40,
    -1,
    "5",
    True,
    None,
    [1],
]


def test_every_numeric_setting_declares_both_bounds() -> None:
    for f in dataclasses.fields(Settings):
        if camel(f.name) in NUMERIC_SETTINGS:
            rule = f.metadata.get("quill.rule")
            assert rule is not None and rule.low is not None and rule.high is not None, f.name


@pytest.mark.parametrize("key", NUMERIC_SETTINGS)
@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
def test_a_bad_number_is_named_and_keeps_its_default_while_good_keys_are_taken(
    key: str, value: object
) -> None:
    good = {"completionMode": "multi"}
    settings, problems = parse_settings({key: value, **good})
    assert len(problems) == 1 and problems[0].startswith(f"{key} takes ")
    assert settings == dataclasses.replace(Settings(), completion_mode="multi")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # Each of these once made every completion empty, an InternalError or unanswered.
        ("requestTimeoutS", math.nan),
        ("requestTimeoutS", math.inf),
        ("requestTimeoutS", 1e308),
        ("maxTokens", 2**40),
        ("retrievalTokenBudget", 2**40),
        ("debounceMs", 1e12),
    ],
)
def test_the_settings_that_broke_completions_are_refused(key: str, value: object) -> None:
    settings, problems = parse_settings({key: value})
    assert settings == Settings()
    assert problems == [problems[0]] and key in problems[0] and repr(value) in problems[0]


@pytest.mark.parametrize("value", [-1, 60_001, math.nan, "1000", True])
def test_a_bad_longest_hold_is_refused_and_the_default_kept(value: object) -> None:
    settings, problems = parse_settings({"maxHoldMs": value})
    assert settings.max_hold_ms == Settings().max_hold_ms == 1000
    assert len(problems) == 1 and "maxHoldMs" in problems[0]


def test_bounds_are_inclusive_unless_declared_otherwise() -> None:
    settings, problems = parse_settings(
        {"maxTokens": 8192, "debounceMs": 10_000, "minChanceInTime": 0, "requestTimeoutS": 3600}
    )
    assert problems == []
    assert (settings.max_tokens, settings.debounce_ms) == (8192, 10_000)
    _, problems = parse_settings({"minChanceInTime": 1, "requestTimeoutS": 0})
    assert len(problems) == 2


def test_integral_floats_are_integers_and_integers_are_numbers() -> None:
    settings, problems = parse_settings({"maxTokens": 64.0, "requestTimeoutS": 3})
    assert problems == []
    assert settings.max_tokens == 64 and isinstance(settings.max_tokens, int)
    assert settings.request_timeout_s == 3.0 and isinstance(settings.request_timeout_s, float)
    _, problems = parse_settings({"maxTokens": 64.5})
    assert problems == ["maxTokens takes integers from 0 to 8192, got 64.5"]


def test_text_settings_refuse_other_types_and_lone_surrogates() -> None:
    settings, problems = parse_settings({"pythonPath": "\ud800", "servingAddress": 50051})
    assert settings == Settings()
    assert [p.split(" ")[0] for p in problems] == ["servingAddress", "pythonPath"]
