"""JSON objects from the editor (initializationOptions, command arguments) into dataclasses.

One cattrs converter serves them all: camelCase keys on the wire, strict types (a bool is not an
integer, a string is not a number, NaN and infinities are not numbers, text must be valid
Unicode), unknown keys refused. Each field's limits are declared once, in its metadata
(`checked(...)`), and enforced here, in the same pass as the types; every bad key comes back as
one problem that names it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override
from pygls.exceptions import JsonRpcInvalidParams

T = TypeVar("T")

_RULE = "quill.rule"


@dataclass(frozen=True)
class Rule:
    """What a field admits beyond its type; None: no limit of that kind."""

    low: float | None = None
    high: float | None = None
    # The bound itself is excluded (a timeout of 0 is no timeout; a chance of 1 is certainty).
    above_low: bool = False
    below_high: bool = False
    max_chars: int | None = None
    choices: tuple[str, ...] | None = None
    # A regular expression the whole text matches, and what it means for people.
    pattern: str | None = None
    pattern_name: str = ""

    def admits(self, value: Any) -> bool:
        if isinstance(value, str):
            return (
                (self.max_chars is None or len(value) <= self.max_chars)
                and (self.choices is None or value in self.choices)
                and (self.pattern is None or re.fullmatch(self.pattern, value) is not None)
            )
        if self.low is not None and (value <= self.low if self.above_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.below_high else value <= self.high)

    def describe(self) -> str:
        """The limits in words: 'from 0 to 64', 'above 0 and at most 3600', 'one of a, b'."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.pattern_name:
            return self.pattern_name
        if self.max_chars is not None:
            return f"of at most {self.max_chars} characters"
        if self.low is None or self.high is None:
            return ""
        low, high = _number(self.low), _number(self.high)
        if not (self.above_low or self.below_high):
            return f"from {low} to {high}"
        return (
            f"{'above' if self.above_low else 'at least'} {low} and "
            f"{'below' if self.below_high else 'at most'} {high}"
        )


def checked(default: Any = dataclasses.MISSING, **rule: Any) -> Any:
    """A dataclass field with its limits (see Rule); no default: the key is required."""
    return dataclasses.field(default=default, metadata={_RULE: Rule(**rule)})


def checked_factory(default_factory: Callable[[], Any], **rule: Any) -> Any:
    return dataclasses.field(default_factory=default_factory, metadata={_RULE: Rule(**rule)})


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---- strict primitive types ----


def _bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not a boolean")
    return value


def _int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("not an integer")
    if isinstance(value, float):
        if not value.is_integer():  # also NaN and the infinities
            raise ValueError("not an integer")
        return int(value)
    return value


def _float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not a finite number")
    return float(value)


def _str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    value.encode("utf-8")  # a lone surrogate cannot be sent on, logged or used as a path
    return value


converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
converter.register_structure_hook(bool, _bool)
converter.register_structure_hook(int, _int)
converter.register_structure_hook(float, _float)
converter.register_structure_hook(str, _str)


def _field_hook(kind: Any, rule: Rule | None) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        result = converter.structure(value, kind)
        if rule is not None and result is not None and not rule.admits(result):
            raise ValueError("out of bounds")
        return result

    return structure


def _camel_case_fields(cls: type) -> Callable[[Any, Any], Any]:
    kinds = typing.get_type_hints(cls)
    overrides: dict[str, Any] = {
        f.name: override(
            rename=camel(f.name), struct_hook=_field_hook(kinds[f.name], f.metadata.get(_RULE))
        )
        for f in dataclasses.fields(cls)
    }
    return make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **overrides)


converter.register_structure_hook_factory(dataclasses.is_dataclass, _camel_case_fields)


# ---- structuring with problems named for people ----


def _expected(cls: type, name: str) -> str:
    """What field `name` of `cls` takes, in words: 'integers from 0 to 64'."""
    kind = typing.get_type_hints(cls)[name]
    nullable = type(None) in typing.get_args(kind)
    if nullable:
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    rule = next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get(_RULE)
    limits = rule.describe() if rule is not None else ""
    if kind is str and (rule is not None and (rule.choices or rule.pattern_name)):
        expected = limits  # 'one of auto, single, multi', 'host:port'
    else:
        words = {bool: "true or false", int: "integers", float: "numbers", str: "text"}
        expected = " ".join(filter(None, (words.get(kind, str(kind)), limits)))
    return expected + (" (or null)" if nullable else "")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problems(
    error: ClassValidationError, cls: type, options: dict[str, Any], noun: str
) -> dict[str, str]:
    """Problem per camelCase key, from cattrs' grouped errors."""
    problems: dict[str, str] = {}
    with_notes, others = error.group_exceptions()
    for exception, note in with_notes:
        key = camel(note.name)
        if isinstance(exception, KeyError) and key not in options:
            problems[key] = f"{key} is required"
        else:
            problems[key] = (
                f"{key} takes {_expected(cls, note.name)}, got {_shown(options.get(key))}"
            )
    for exception in others:
        if isinstance(exception, ForbiddenExtraKeysError):
            for key in sorted(exception.extra_fields):
                problems[key] = f"unknown {noun} {key!r}"
        else:
            problems[type(exception).__name__] = str(exception)
    return problems


def structure_leniently(options: Any, cls: type[T], noun: str) -> tuple[T, list[str]]:
    """`cls` from `options` and the problems found; each bad key keeps its default (every field
    of `cls` has one)."""
    if options is None:
        return cls(), []
    if not isinstance(options, dict):
        return cls(), [f"{noun}s must be an object, not {type(options).__name__}"]
    try:
        return converter.structure(options, cls), []
    except ClassValidationError as error:
        problems = _problems(error, cls, options, noun)
    accepted = {key: value for key, value in options.items() if key not in problems}
    try:
        return converter.structure(accepted, cls), list(problems.values())
    except ClassValidationError:  # a problem no key can be blamed for: all defaults
        return cls(), list(problems.values())


def structure_arguments(options: Any, cls: type[T], command: str) -> T:
    """`cls` from a command's object argument; InvalidParams (-32602) naming every bad key."""
    if not isinstance(options, dict):
        raise JsonRpcInvalidParams(f"{command} takes an object, not {type(options).__name__}")
    try:
        return converter.structure(options, cls)
    except ClassValidationError as error:
        problems = _problems(error, cls, options, "argument")
    raise JsonRpcInvalidParams(f"{command}: " + "; ".join(problems.values()))
