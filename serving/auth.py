"""Who is calling: bearer tokens mapped to tenants, checked for every RPC in one interceptor.

Tokens come from (docs/security.md):
- a token file (`quill serve --token-file`): one line per token, `TENANT sha256:HEX`, where HEX
  is the SHA-256 of the token (`quill token new` writes such lines); `#` starts a comment. Serving
  never holds the tokens themselves. The file is read again when it changes (checked at most
  once a second), so adding a user or rotating a token needs no restart; a file that no longer
  parses keeps the previous tokens and logs why;
- `QUILL_TOKEN`: one token, tenant "default";
- neither: the local token of this user (quill/local_auth.py, created on first start), tenant
  "local": only processes that can read the user's cache folder get in.

Health (and reflection, when on) answer without a token: load balancers and probes call them.
Every other RPC without a valid token gets UNAUTHENTICATED before any handler runs, so a caller
without a token learns nothing about workspaces. The tenant of a valid token is the caller's
identity for the rest of the call: `current_tenant()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from quill.grpc_metadata import AUTHORIZATION_HEADER, BEARER_PREFIX
from quill.tokens import HASH_SCHEME, TENANT_PATTERN, hash_token
from serving.errors import UnauthenticatedError
from serving.handlers import rewrap

logger = logging.getLogger(__name__)

ENV_TENANT = "default"
LOCAL_TENANT = "local"
# How often a request may cause the token file to be looked at again.
_RELOAD_CHECK_S = 1.0

_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("quill_tenant")


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and the line."""


def parse_token_file(text: str, source: str) -> dict[str, str]:
    """token hash -> tenant, from the token file's text."""
    tenants: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{source}:{number}"
        if len(fields) != 2:
            raise TokenFileError(f"{where}: want 'TENANT sha256:HEX', got {len(fields)} fields")
        tenant, digest = fields
        if not TENANT_PATTERN.fullmatch(tenant):
            raise TokenFileError(
                f"{where}: tenant {tenant[:80]!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        if not re.fullmatch(re.escape(HASH_SCHEME) + "[0-9a-f]{64}", digest):
            raise TokenFileError(f"{where}: the hash must be 'sha256:' and 64 lowercase hex digits")
        if digest in tenants:
            raise TokenFileError(f"{where}: the same token hash is listed twice")
        tenants[digest] = tenant
    return tenants


@dataclass(frozen=True)
class _FileStamp:
    mtime_ns: int
    size: int
    inode: int


def _stamp(path: Path) -> _FileStamp:
    # stat() follows symlinks: a Kubernetes Secret update swaps the link, which changes these.
    info = os.stat(path)
    return _FileStamp(info.st_mtime_ns, info.st_size, info.st_ino)


class TokenStore:
    """Token hashes and their tenants: from a token file (reloaded on change) and fixed ones."""

    def __init__(self, token_file: Path | None = None, fixed: dict[str, str] | None = None) -> None:
        """`fixed`: token -> tenant (QUILL_TOKEN or the local token)."""
        self._file = token_file
        self._fixed = {hash_token(token): tenant for token, tenant in (fixed or {}).items()}
        self._from_file: dict[str, str] = {}
        self._stamp: _FileStamp | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if token_file is not None:
            # At start a bad file is fatal: serving must not run with tokens nobody meant.
            self._load(_stamp(token_file))
        if not self._fixed and not self._from_file:
            raise TokenFileError("no tokens: the token file lists none and none was given")

    @property
    def tenants(self) -> set[str]:
        return {*self._fixed.values(), *self._from_file.values()}

    def tenant_for(self, token: str) -> str | None:
        """The tenant of `token`, or None if no such token is known."""
        self._maybe_reload()
        digest = hash_token(token)
        return self._from_file.get(digest) or self._fixed.get(digest)

    def _maybe_reload(self) -> None:
        if self._file is None:
            return
        now = time.monotonic()
        if now - self._checked < _RELOAD_CHECK_S:
            return
        with self._lock:
            if now - self._checked < _RELOAD_CHECK_S:
                return
            self._checked = now
            try:
                stamp = _stamp(self._file)
                if stamp != self._stamp:
                    self._load(stamp)
                    logger.info(
                        "token file %s reloaded: %d tokens", self._file, len(self._from_file)
                    )
            except (OSError, TokenFileError) as error:
                # Keep the tokens that worked: a half-edited file must not lock everyone out.
                logger.error("token file not reloaded, previous tokens kept: %s", error)

    def _load(self, stamp: _FileStamp) -> None:
        assert self._file is not None
        text = self._file.read_text("utf-8")
        self._from_file = parse_token_file(text, str(self._file))
        self._stamp = stamp


def token_store(
    token_file: Path | None, env_token: str, local_token: Callable[[], str]
) -> TokenStore:
    """The tokens `quill serve` accepts: the file's and QUILL_TOKEN's, or else the local one
    (`local_token()` reads it, creating it on first start)."""
    fixed = {env_token: ENV_TENANT} if env_token else {}
    if token_file is None and not fixed:
        fixed = {local_token(): LOCAL_TENANT}
    return TokenStore(token_file, fixed)


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` entry, if any."""
    for key, value in metadata or ():
        if (
            key == AUTHORIZATION_HEADER
            and isinstance(value, str)
            and value.startswith(BEARER_PREFIX)
        ):
            return value[len(BEARER_PREFIX) :].strip()
    return None


def current_tenant() -> str:
    """The tenant of the RPC being served (set by AuthInterceptor)."""
    return _TENANT.get()


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without a valid token and runs the others as their token's tenant.

    `open_services`: full service names that need no token (health, reflection).
    `admit(tenant, method)`: further per-tenant admission of streams (the stream cap); returns
    a context manager held for the whole call, or raises.
    `observe(tenant, method)`: called for every authenticated call (opt-in tenant metrics).
    """

    def __init__(
        self,
        tokens: TokenStore,
        open_services: Iterable[str],
        admit: Callable[[str, str], Any] | None = None,
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        self._tokens = tokens
        self._open = tuple(f"/{name}/" for name in open_services)
        self._admit = admit
        self._observe = observe

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._open):
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        tenant = self._tokens.tenant_for(token) if token else None
        if tenant is None:
            message = (
                "a valid bearer token is required (metadata 'authorization: Bearer <token>')"
                if token is None
                else "the bearer token is not valid"
            )
            return rewrap(handler, unary=_refuse_unary(message), stream=_refuse_stream(message))
        name = method.rsplit("/", 1)[-1]
        if self._observe is not None:
            self._observe(tenant, name)
        return rewrap(
            handler,
            unary=lambda behavior: _as_unary(behavior, tenant),
            stream=lambda behavior: self._as_stream(behavior, tenant, name),
        )

    def _as_stream(self, behavior: Callable[..., Any], tenant: str, method: str) -> Any:
        admit = self._admit

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            _TENANT.set(tenant)
            with admit(tenant, method) if admit is not None else contextlib.nullcontext():
                async for response in behavior(request, context):
                    yield response

        return wrapped


def _as_unary(behavior: Callable[..., Any], tenant: str) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        # Each RPC runs in its own task, so the tenant set here is seen by this call only.
        _TENANT.set(tenant)
        return await behavior(request, context)

    return wrapped


def _refuse_unary(message: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(_: Callable[..., Any]) -> Callable[..., Any]:
        async def refused(request: Any, context: grpc.aio.ServicerContext) -> Any:
            raise UnauthenticatedError(message)

        return refused

    return wrap


def _refuse_stream(message: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(_: Callable[..., Any]) -> Callable[..., Any]:
        async def refused(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            raise UnauthenticatedError(message)
            yield  # an async generator, like the behaviour it replaces

        return refused

    return wrap
