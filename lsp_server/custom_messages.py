"""The shapes of the messages Quill takes beyond lsprotocol's (Copilot's notifications about
inline completion items), so the edge types them as it types LSP's own (lsp_server/protocol.py)
and their handlers get well-typed values too."""

from __future__ import annotations

from typing import Any

import attrs
from lsprotocol import types, validators

from lsp_server.methods import DID_PARTIALLY_ACCEPT_COMPLETION, DID_SHOW_COMPLETION


@attrs.define
class DidShowCompletionParams:
    item: types.InlineCompletionItem


@attrs.define
class DidPartiallyAcceptCompletionParams:
    item: types.InlineCompletionItem
    # Characters of the item's text the user took.
    accepted_length: int = attrs.field(validator=validators.uinteger_validator)


@attrs.define
class DidShowCompletionNotification:
    params: DidShowCompletionParams
    method: str = DID_SHOW_COMPLETION
    jsonrpc: str = "2.0"


@attrs.define
class DidPartiallyAcceptCompletionNotification:
    params: DidPartiallyAcceptCompletionParams
    method: str = DID_PARTIALLY_ACCEPT_COMPLETION
    jsonrpc: str = "2.0"


MESSAGE_TYPES: dict[str, type[Any]] = {
    DID_SHOW_COMPLETION: DidShowCompletionNotification,
    DID_PARTIALLY_ACCEPT_COMPLETION: DidPartiallyAcceptCompletionNotification,
}
