"""Where serving listens and how: TLS or plain text, and the refusal to expose code unprotected.

Plain text is fine on loopback (only this machine connects, and the token keeps other local
users out). Any other address carries tokens and source code across a network, so serving
refuses it unless TLS is on and tokens were given by the operator (a token file or
QUILL_TOKEN) — or the operator says `--insecure` (behind a TLS-terminating proxy on the same
host, say), which is logged as a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from quill.channel import is_loopback
from serving.config import SecurityConfig

logger = logging.getLogger(__name__)


class ExposureError(OSError):
    """Serving will not listen where the configuration leaves it unprotected."""


def check_exposure(address: str, security: SecurityConfig, operator_tokens: bool) -> None:
    """Raise ExposureError for an unprotected non-loopback address (see the module docstring)."""
    if is_loopback(address):
        return
    tls = security.tls_cert is not None
    if tls and operator_tokens:
        return
    missing = " and ".join(
        what
        for what, present in (
            ("TLS (--tls-cert/--tls-key)", tls),
            ("tokens (--token-file or QUILL_TOKEN)", operator_tokens),
        )
        if not present
    )
    if not security.insecure:
        raise ExposureError(
            f"refusing to listen on {address} without {missing}: other machines could read "
            "the code and tokens that cross the network or use the local token. Listen on "
            "127.0.0.1, add them, or pass --insecure to do it anyway."
        )
    logger.warning(
        "--insecure: listening on %s without %s; anyone on the network path can read code "
        "and tokens",
        address,
        missing,
    )


def server_credentials(security: SecurityConfig) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port, or None for plain text."""
    if (security.tls_cert is None) != (security.tls_key is None):
        raise ExposureError("--tls-cert and --tls-key go together")
    if security.tls_cert is None or security.tls_key is None:
        if security.tls_client_ca is not None:
            raise ExposureError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    client_ca = security.tls_client_ca
    return grpc.ssl_server_credentials(
        [(_read(security.tls_key, "TLS key"), _read(security.tls_cert, "TLS certificate"))],
        root_certificates=_read(client_ca, "client CA") if client_ca is not None else None,
        require_client_auth=client_ca is not None,
    )


def bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> None:
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        raise OSError(f"cannot listen on {address}: {error}") from error
    if bound == 0:
        raise OSError(f"cannot listen on {address}")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ExposureError(f"cannot read the {what} {path}: {error.strerror}") from error
