"""Validation at the edge (lsp_server/validation.py): JSON, the envelope, strict params."""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types

from lsp_server.validation import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    MessageError,
    decode,
    envelope,
    recover_id,
    replace_lone_surrogates,
    strict_converter,
    structure,
)

CONVERTER = strict_converter()


def _completion(**changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "textDocument": {"uri": "file:///a.py"},
        "position": {"line": 0, "character": 0},
        "context": {"triggerKind": 1},
    }
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = params
        for parent in parents:
            node = node[parent]
        if value is ...:
            del node[key]
        else:
            node[key] = value
    return {"jsonrpc": "2.0", "id": 7, "method": "textDocument/inlineCompletion", "params": params}


def _refusal(data: dict[str, Any], kind: type = types.InlineCompletionRequest) -> MessageError:
    with pytest.raises(MessageError) as caught:
        structure(CONVERTER, data, kind)
    return caught.value


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"position__line": -1}, "params.position", "Position.line"),
        ({"position__line": 2**40}, "params.position", "Position.line"),
        ({"position__line": 1.5}, "params.position.line", "expected an integer, got a number"),
        ({"position__character": True}, "params.position.character", "got a boolean"),
        ({"position__character": "3"}, "params.position.character", "got a string"),
        ({"textDocument__uri": 5}, "params.textDocument.uri", "expected a string"),
        ({"context__triggerKind": 9}, "params.context.triggerKind", "not one of"),
        ({"context": ...}, "params.context", "required field missing"),
    ],
)
def test_bad_params_are_refused_naming_the_field(
    changes: dict[str, Any], field: str, says: str
) -> None:
    error = _refusal(_completion(**changes))
    assert error.code == INVALID_PARAMS and error.msg_id == 7
    assert error.message.startswith(f"{field}: ") and says in error.message


def test_an_object_where_an_array_belongs_is_refused() -> None:
    data = {"jsonrpc": "2.0", "id": 1, "method": "workspace/executeCommand"}
    data["params"] = {"command": "quill.stats", "arguments": {"a": 1}}
    error = _refusal(data, types.ExecuteCommandRequest)
    assert error.message == "params.arguments: expected an array, got an object"


def test_nested_objects_with_a_jsonrpc_key_stay_plain_arguments() -> None:
    nested = {"jsonrpc": "2.0", "id": 3, "method": "x", "params": {"jsonrpc": "2.0"}}
    data = {"jsonrpc": "2.0", "id": 1, "method": "workspace/executeCommand"}
    data["params"] = {"command": "quill.stats", "arguments": [nested]}
    message = structure(CONVERTER, data, types.ExecuteCommandRequest)
    assert message.params.arguments == (nested,)


def test_well_formed_params_are_typed() -> None:
    message = structure(CONVERTER, _completion(), types.InlineCompletionRequest)
    assert message.params.context.trigger_kind is types.InlineCompletionTriggerKind.Invoked


@pytest.mark.parametrize(
    ("value", "code", "msg_id"),
    [
        ([1, 2], INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "m"}, INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": True, "method": "m"}, INVALID_REQUEST, None),
        ({"jsonrpc": "1.0", "id": 4, "method": "m"}, INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": "a", "method": 5}, INVALID_REQUEST, "a"),
        ({"jsonrpc": "2.0", "id": 4}, INVALID_REQUEST, 4),
    ],
)
def test_envelopes_that_are_not_json_rpc_are_refused(value: Any, code: int, msg_id: Any) -> None:
    with pytest.raises(MessageError) as caught:
        envelope(value)
    assert (caught.value.code, caught.value.msg_id) == (code, msg_id)


def test_envelope_kinds() -> None:
    assert envelope({"jsonrpc": "2.0", "id": 1, "method": "m"}).kind == "request"
    assert envelope({"jsonrpc": "2.0", "method": "m"}).kind == "notification"
    assert envelope({"jsonrpc": "2.0", "id": 1, "result": None}).kind == "response"


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": 12, "method": "m", "params": {"a": [1, 2',
        b'{"jsonrpc": "2.0", "id": 12, "method": "m", "params": "\xff\xfe"}',
        b'{"jsonrpc": "2.0", "id": 12, "params": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"jsonrpc": "2.0", "id": 12, "params": {},}',
    ],
)
def test_bodies_that_are_not_json_are_refused_under_their_id(body: bytes) -> None:
    with pytest.raises(MessageError) as caught:
        decode(body)
    assert (caught.value.code, caught.value.msg_id) == (PARSE_ERROR, 12)


@pytest.mark.parametrize(
    ("head", "msg_id"),
    [
        (b' { "id" : "abc" , "method"', "abc"),
        (b'{"method": "m", "params": {"id": 3}, "id": 7', 7),
        (b'{"method": "m", "params": {"id": 3, "text": "cut her', None),
        (b'{"id": {"a": 1}}', None),
        (b"[1, 2]", None),
        (b"", None),
    ],
)
def test_an_id_is_recovered_only_from_the_top_level(head: bytes, msg_id: Any) -> None:
    assert recover_id(head) == msg_id


def test_lone_surrogates_become_replacement_characters_of_the_same_length() -> None:
    params = {"a\ud800": ["x\udfffy", {"k": "fine \U0001f600"}]}
    assert replace_lone_surrogates(params, rb'"\ud800"') == 2
    assert params == {"a\ufffd": ["x\ufffdy", {"k": "fine \U0001f600"}]}
    untouched = {"k": "\ud800"}
    assert replace_lone_surrogates(untouched, b'{"k": "no escape here"}') == 0
