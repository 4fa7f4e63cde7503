"""Command-line flags generated from config dataclasses, and the configs built back from them.

vLLM's `get_kwargs` pattern: every field of the config (serving/config.py) is one flag; its help,
choices and name come from the field's metadata (`help`, `choices`, `flag`, `cli`), its type and
default from the field itself. Nested configs add their `flag_prefix`. Flags keep a dotted
destination (`retrieval.enabled`), so building the config back needs no list of fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class DeferredFlagsParser(argparse.ArgumentParser):
    """A parser that adds some flags only when it parses (or shows its help): `quill lsp` never
    pays for importing the serving configs and generating `quill serve`'s flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add_flags: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(add_flags)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        while self._deferred:
            self._deferred.pop(0)(self)
        return super().parse_known_args(args, namespace)


def _nested(kind: Any) -> bool:
    return dataclasses.is_dataclass(kind) and isinstance(kind, type)


def _flag_kwargs(spec: dataclasses.Field[Any], kind: Any) -> dict[str, Any]:
    """argparse keyword arguments of one field: type, default, choices, help."""
    values = [k for k in typing.get_args(kind) if k is not type(None)] or [kind]
    if spec.default is not dataclasses.MISSING:
        default = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        default = spec.default_factory()
    else:
        raise ValueError(f"config field {spec.name} has no default; set it with cli=False")
    kwargs: dict[str, Any] = {"default": default, "help": spec.metadata["help"].replace("%", "%%")}
    if default is not None:
        kwargs["help"] += " (default: %(default)s)"
    if values[0] is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif values[0] in (int, float, str, Path):
        kwargs["type"] = values[0]
        if not spec.metadata.get("choices"):
            kwargs["metavar"] = spec.name.upper()
    else:
        raise ValueError(f"config field {spec.name}: no flag for type {kind}")
    if spec.metadata.get("choices"):
        kwargs["choices"] = spec.metadata["choices"]
    return kwargs


def add_config_flags(
    parser: argparse.ArgumentParser, config: type, prefix: str = "", path: str = ""
) -> None:
    """One flag per field of `config` (and of the configs nested in it)."""
    kinds = typing.get_type_hints(config)
    for spec in dataclasses.fields(config):
        dest = f"{path}{spec.name}"
        if _nested(kinds[spec.name]):
            nested_prefix = prefix + spec.metadata.get("flag_prefix", "")
            add_config_flags(parser, kinds[spec.name], nested_prefix, f"{dest}.")
        elif spec.metadata.get("cli", False):
            name = spec.metadata.get("flag") or prefix + spec.name.replace("_", "-")
            parser.add_argument(f"--{name}", dest=dest, **_flag_kwargs(spec, kinds[spec.name]))


def config_from_flags(config: type[T], args: argparse.Namespace, given: dict[str, Any]) -> T:
    """`config` from the parsed flags; `given` has the fields without a flag, by dotted path
    (`{"engine.model": ...}`), and may override flags too."""
    return typing.cast(T, _build(config, vars(args), given, ""))


def _build(config: type, parsed: dict[str, Any], given: dict[str, Any], path: str) -> Any:
    kinds = typing.get_type_hints(config)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(config):
        dest = f"{path}{spec.name}"
        if dest in given:
            values[spec.name] = given[dest]
        elif _nested(kinds[spec.name]):
            values[spec.name] = _build(kinds[spec.name], parsed, given, f"{dest}.")
        elif dest in parsed:
            values[spec.name] = parsed[dest]
    return config(**values)
