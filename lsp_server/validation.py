"""Validation at the edge: from a message body to values handlers can trust, or an error to answer.

- The body must be UTF-8 JSON; the top-level object is the only one read as a message (pygls
  reads every nested object with a "jsonrpc" key as one, breaking command arguments).
- The envelope must be JSON-RPC 2.0: an integer or string id, a string method.
- Params are structured with lsprotocol's converter made strict: an int is an int (not a bool
  or 1.5), a str a str (not 7), an array an array (not an object). Errors name the field by its
  JSON path.
- Lone UTF-16 surrogates (`"\\ud800"`) in params become U+FFFD: one code unit for one, so every
  position in a document stays where the editor put it.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_sequence
from lsprotocol import types
from pygls.protocol import default_converter

# JSON-RPC and LSP error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002

MsgId = int | str

_POSSIBLE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SNAKE = re.compile(r"_([a-z])")
# An id is looked for in this many first bytes of a body that cannot be read.
_ID_SEARCH_BYTES = 64 * 1024


class MessageError(Exception):
    """A message that cannot be handled; answered with `code` when it is a request."""

    def __init__(
        self, code: int, message: str, msg_id: MsgId | None = None, fields: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.msg_id = msg_id
        # JSON paths of the bad fields ("params.position.line"), when they are known.
        self.fields = fields or []


@dataclass(frozen=True)
class Envelope:
    """A JSON-RPC message as the client sent it: `kind` is request, notification or response."""

    kind: str
    data: dict[str, Any]
    msg_id: MsgId | None
    method: str


def is_message_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def decode(body: bytes) -> Any:
    """The JSON value of a body; MessageError(PARSE_ERROR) with the id, if one can be read."""
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        reason = str(error) if isinstance(error, ValueError) else "nested too deeply"
        raise MessageError(
            PARSE_ERROR, f"not UTF-8 JSON: {reason[:200]}", recover_id(body)
        ) from None


def recover_id(head: bytes) -> MsgId | None:
    """The id of a message from the first bytes of its body, if they hold a top-level "id"."""
    text = head[:_ID_SEARCH_BYTES].decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    position = _skip_space(text, 0)
    if not text.startswith("{", position):
        return None
    position += 1
    while True:
        position = _skip_space(text, position)
        if not text.startswith('"', position):
            return None
        try:
            key, position = json.decoder.scanstring(text, position + 1)  # type: ignore[attr-defined]
            position = _skip_space(text, position)
            if not text.startswith(":", position):
                return None
            value, position = decoder.raw_decode(text, _skip_space(text, position + 1))
        except (ValueError, IndexError, RecursionError):
            return None  # cut or malformed before an id was found
        if key == "id":
            return value if is_message_id(value) else None
        position = _skip_space(text, position)
        if not text.startswith(",", position):
            return None
        position += 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def envelope(value: Any) -> Envelope:
    """The message's kind, id and method; MessageError(INVALID_REQUEST) when it is none."""
    if not isinstance(value, dict):
        raise MessageError(INVALID_REQUEST, "a message must be a JSON object")
    has_id = "id" in value
    msg_id = value.get("id")
    if has_id and not is_message_id(msg_id):
        raise MessageError(INVALID_REQUEST, "id must be an integer or a string")
    if value.get("jsonrpc") != "2.0":
        raise MessageError(INVALID_REQUEST, 'jsonrpc must be "2.0"', msg_id)
    method = value.get("method")
    if "method" in value:
        if not isinstance(method, str):
            raise MessageError(INVALID_REQUEST, "method must be a string", msg_id)
        return Envelope("request" if has_id else "notification", value, msg_id, method)
    if has_id and ("result" in value or "error" in value):
        return Envelope("response", value, msg_id, "")
    raise MessageError(INVALID_REQUEST, "neither a request, a notification nor a response", msg_id)


def replace_lone_surrogates(data: dict[str, Any] | list[Any], raw: bytes) -> int:
    """Replace lone surrogates in `data`'s strings (keys too) with U+FFFD, in place; `raw` is
    the JSON body, to skip the walk when it has no escape that could make one. Returns how many
    strings changed."""
    if not _POSSIBLE_SURROGATE_ESCAPE.search(raw):
        return 0
    changed = 0

    def clean(text: str) -> str:
        nonlocal changed
        if _LONE_SURROGATE.search(text) is None:
            return text
        changed += 1
        return _LONE_SURROGATE.sub("\ufffd", text)

    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                value = node.pop(key)
                node[clean(key)] = clean(value) if isinstance(value, str) else value
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = clean(value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
    return changed


# -- the strict converter --------------------------------------------------------------------


class _WrongTypeError(TypeError):
    """A JSON value of the wrong type; its message is what the client is told."""


def _exactly(kind: type, name: str) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise _WrongTypeError(f"expected {name}, got {_json_type(value)}")
        return value

    return structure


def _number(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _WrongTypeError(f"expected a number, got {_json_type(value)}")
    return float(value)


def _id_or_token(value: Any, _: Any) -> int | str:
    if not is_message_id(value):
        raise _WrongTypeError(f"expected an integer or a string, got {_json_type(value)}")
    return value  # type: ignore[no-any-return]


def _enum_member(value: Any, kind: type[enum.Enum]) -> enum.Enum:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _WrongTypeError(f"expected one of {kind.__name__}'s values, got {_json_type(value)}")
    try:
        return kind(value)
    except ValueError:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise _WrongTypeError(f"{shown} is not one of {kind.__name__}'s values") from None


def _is_enum(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, enum.Enum)


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "an array", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def strict_converter() -> cattrs.Converter:
    """pygls's converter (lsprotocol's hooks), with JSON's types kept apart."""
    converter = default_converter()
    converter.register_structure_hook(int, _exactly(int, "an integer"))
    converter.register_structure_hook(str, _exactly(str, "a string"))
    converter.register_structure_hook(bool, _exactly(bool, "a boolean"))
    converter.register_structure_hook(float, _number)
    # Each enum by name: IntEnums and str enums would otherwise take the int or str hook.
    for kind in vars(types).values():
        if _is_enum(kind):
            converter.register_structure_hook(kind, _enum_member)
    # lsprotocol lets anything through for these unions (request ids, progress tokens).
    # typing.Union, not `|`: the hooks are found by the exact type lsprotocol's fields declare.
    for union in (Union[int, str], Union[str, int]):  # noqa: UP007
        converter.register_structure_hook(union, _id_or_token)
    language = Union[types.LanguageKind, str]  # noqa: UP007
    converter.register_structure_hook(language, _exactly(str, "a string"))

    def sequence_factory(kind: Any) -> Callable[[Any, Any], Any]:
        # cattrs takes any iterable for a sequence: an object's keys, a string's characters.
        items = homogenous_tuple_structure_factory(kind, converter)

        def structure(value: Any, kind: Any) -> Any:
            if not isinstance(value, list):
                raise _WrongTypeError(f"expected an array, got {_json_type(value)}")
            return items(value, kind)

        return structure

    converter.register_structure_hook_factory(is_sequence, sequence_factory)
    return converter


def structure(converter: cattrs.Converter, data: dict[str, Any], kind: type) -> Any:
    """`data` as `kind`; MessageError(INVALID_PARAMS) naming each bad field otherwise."""
    try:
        return converter.structure(data, kind)
    except cattrs.BaseValidationError as error:
        problems = [
            _json_names(problem)
            for problem in cattrs.transform_error(error, path="", format_exception=_describe)
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        problems = [("", _describe(error, None))]
    message = "; ".join(f"{path}: {text}" if path else text for path, text in problems[:5])
    fields = [path for path, _ in problems if path]
    raise MessageError(INVALID_PARAMS, message[:500], data.get("id"), fields)


def _describe(error: BaseException, kind: Any) -> str:
    if isinstance(error, KeyError):
        return "required field missing"
    if isinstance(error, (_WrongTypeError, ValueError)) and str(error):
        if "disambiguate" in str(error):
            return "matches none of the shapes this field takes"
        return str(error)
    return cattrs.v.format_exception(error, kind)


def _json_names(problem: str) -> tuple[str, str]:
    """ "expected an integer @ .params.position.line" -> ("params.position.line", "expected...")"""
    text, _, path = problem.rpartition(" @ ")
    return _SNAKE.sub(lambda match: match.group(1).upper(), path.lstrip(".")), text
