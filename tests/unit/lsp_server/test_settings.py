from __future__ import annotations

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
