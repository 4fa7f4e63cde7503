"""Exceptions become gRPC status codes here, in one interceptor, for every RPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from serving import metrics
from serving.handlers import rewrap

logger = logging.getLogger(__name__)


class InvalidRequestError(ValueError):
    """The client sent something the RPC cannot serve; maps to INVALID_ARGUMENT."""


class EngineNotReadyError(RuntimeError):
    """The engine is still loading or has stopped; maps to UNAVAILABLE."""


class ClientTooSlowError(RuntimeError):
    """The client did not send what the call needs in time; maps to DEADLINE_EXCEEDED."""


class UnauthenticatedError(PermissionError):
    """No valid bearer token; maps to UNAUTHENTICATED (the message never says more)."""


class ResourceExhaustedError(RuntimeError):
    """A per-tenant or per-workspace cap was hit; maps to RESOURCE_EXHAUSTED. The message names
    the cap, its value and the setting that raises it."""


class StorageError(RuntimeError):
    """Serving could not write to its data folder: RESOURCE_EXHAUSTED when it is full (the
    operator must make room), else UNAVAILABLE (try again, or another replica)."""

    def __init__(self, message: str, full: bool) -> None:
        super().__init__(message)
        self.full = full


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, InvalidRequestError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, EngineNotReadyError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    if isinstance(error, ClientTooSlowError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(error)
    if isinstance(error, UnauthenticatedError):
        return grpc.StatusCode.UNAUTHENTICATED, str(error)
    if isinstance(error, ResourceExhaustedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
    if isinstance(error, StorageError):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if error.full else grpc.StatusCode.UNAVAILABLE
        return code, str(error)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions to status codes and counts every RPC by method and final code."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        return rewrap(
            handler,
            unary=lambda behavior: _wrap_unary(behavior, method),
            stream=lambda behavior: _wrap_stream(behavior, method),
        )


async def _abort(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
    code, message = status_for(error)
    if code == grpc.StatusCode.INTERNAL:
        logger.exception("%s failed", method, exc_info=error)
    else:
        logger.info("%s: %s: %s", method, code.name, message)
    metrics.RPC_REQUESTS.labels(method, code.name).inc()
    await context.abort(code, message)


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., Any]:
    # The request is one message (server streaming) or an async iterator of them (bidi).
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with metrics.REQUEST_DURATION.labels(method).time():
            try:
                async for response in behavior(request, context):
                    yield response
            except asyncio.CancelledError:
                metrics.RPC_REQUESTS.labels(method, grpc.StatusCode.CANCELLED.name).inc()
                raise
            except Exception as error:  # noqa: BLE001 - the one place errors become statuses
                await _abort(context, method, error)
            else:
                metrics.RPC_REQUESTS.labels(method, grpc.StatusCode.OK.name).inc()

    return wrapped


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Any]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with metrics.REQUEST_DURATION.labels(method).time():
            try:
                response = await behavior(request, context)
            except asyncio.CancelledError:
                metrics.RPC_REQUESTS.labels(method, grpc.StatusCode.CANCELLED.name).inc()
                raise
            except Exception as error:  # noqa: BLE001
                await _abort(context, method, error)
            metrics.RPC_REQUESTS.labels(method, grpc.StatusCode.OK.name).inc()
            return response

    return wrapped
