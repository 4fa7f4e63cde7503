"""Client channels to serving with its credentials: one place for the language server, the
`quill` commands, the benchmarks and the tests, so all of them connect the way users do.

The bearer token rides on gRPC's own access-token call credentials, which gRPC only sends over
a channel that protects it: TLS, or a local connection (loopback TCP, checked by gRPC's local
channel credentials). A token is therefore never sent in plain text across a network; a
plain-text address that is not loopback gets a channel without it.

Which token: the one given (a setting or a flag), else the file given, else `QUILL_TOKEN`, else,
for a serving on this machine, the local token `quill serve` created (quill/local_auth.py).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from quill import envs, local_auth

logger = logging.getLogger(__name__)


class ChannelConfigError(ValueError):
    """A client setting (token file, certificate) that cannot be used; the message says why."""


@dataclass(frozen=True)
class ClientSecurity:
    """How a client authenticates to serving and protects the connection."""

    # Bearer token ("" sends none).
    token: str = ""
    # TLS to serving; without `root_certificates` the system's roots verify serving.
    tls: bool = False
    root_certificates: bytes | None = None
    # Mutual TLS: the client's own certificate chain and key (PEM).
    certificate_chain: bytes | None = None
    private_key: bytes | None = None


def is_loopback(address: str) -> bool:
    """Whether host:port names this machine without DNS (localhost, 127.0.0.0/8, ::1)."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(address: str, token: str = "", token_file: str = "") -> str:
    """The token to send to `address` (see the module's docstring for the order)."""
    if token:
        return token.strip()
    if token_file:
        found = _read_file(token_file, "token file").decode("utf-8", "replace").strip()
        if not found:
            raise ChannelConfigError(f"token file {token_file} is empty")
        return found
    if envs.token():
        return envs.token()
    if is_loopback(address):
        return local_auth.read_secret(local_auth.local_token_path()) or ""
    return ""


def client_security(
    address: str,
    *,
    token: str = "",
    token_file: str = "",
    tls: bool = False,
    ca_file: str = "",
    client_cert: str = "",
    client_key: str = "",
) -> ClientSecurity:
    """Security for `address` from settings or flags (empty values take the defaults); reads
    the files now, so a bad one is reported here (ChannelConfigError), not at the first call."""
    if bool(client_cert) != bool(client_key):
        raise ChannelConfigError("a client certificate and its key go together (mutual TLS)")
    if (ca_file or client_cert) and not tls:
        raise ChannelConfigError("a CA file or client certificate needs TLS turned on")
    return ClientSecurity(
        token=resolve_token(address, token, token_file),
        tls=tls,
        root_certificates=_read_file(ca_file, "CA file") if ca_file else None,
        certificate_chain=_read_file(client_cert, "client certificate") if client_cert else None,
        private_key=_read_file(client_key, "client key") if client_key else None,
    )


def channel_credentials(address: str, security: ClientSecurity) -> grpc.ChannelCredentials | None:
    """Credentials for a channel to `address`; None: a plain-text channel without a token."""
    if security.tls:
        transport = grpc.ssl_channel_credentials(
            root_certificates=security.root_certificates,
            private_key=security.private_key,
            certificate_chain=security.certificate_chain,
        )
    elif is_loopback(address):
        transport = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        if security.token:
            logger.warning(
                "not sending the token to %s: it is not on this machine and TLS is off", address
            )
        return None
    if not security.token:
        return transport
    return grpc.composite_channel_credentials(
        transport, grpc.access_token_call_credentials(security.token)
    )


Options = Sequence[tuple[str, Any]]


def open_channel(
    address: str, security: ClientSecurity | None = None, options: Options = ()
) -> grpc.aio.Channel:
    """An asyncio channel to serving; `security` None: the defaults for `address`."""
    security = security if security is not None else client_security(address)
    credentials = channel_credentials(address, security)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def open_blocking_channel(
    address: str, security: ClientSecurity | None = None, options: Options = ()
) -> grpc.Channel:
    """The same as a blocking channel (health checks in launchers)."""
    security = security if security is not None else client_security(address)
    credentials = channel_credentials(address, security)
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise ChannelConfigError(f"cannot read the {what} {path}: {error.strerror}") from error
