"""Rebuilding a gRPC method handler around new behaviours: what every server interceptor here
does (errors.py maps exceptions to statuses, auth.py attaches the caller's tenant)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

# Takes a handler's behaviour (unary: returns a coroutine; stream: an async iterator) and
# returns the one that replaces it.
Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]


def rewrap(handler: grpc.RpcMethodHandler, unary: Wrap, stream: Wrap) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour wrapped: `unary` for unary responses, `stream` for streamed
    ones (server streaming and bidirectional). Client-streaming methods (none here) pass as is."""
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            stream(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
