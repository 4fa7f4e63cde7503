"""A completion over mutual TLS with a token from a token file, through `quill complete` (the
real language server) and a real `quill serve` on the real model: the path a team's users take
to a serving on another machine. Its own serving process (eager engine: it starts in seconds),
because the session's serves plain text on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quill.channel import client_security
from quill.tokens import hash_token, new_token
from quill_cli.launcher import ServingProcess
from tests.conftest import ROOT
from tests.e2e.conftest import serving_log_dir
from tests.support.tls import CertificateAuthority

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls_serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServingProcess, dict]]:
    folder = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority(folder / "ca")
    server = ca.issue("serving", server=True)
    client = ca.issue("alice-laptop", server=False)
    token = new_token()
    (folder / "tokens").write_text(f"alice {hash_token(token)}\n", encoding="utf-8")
    (folder / "alice-token").write_text(token, encoding="utf-8")
    files = {
        "ca": str(ca.cert),
        "cert": str(client.cert),
        "key": str(client.key),
        "token": str(folder / "alice-token"),
    }
    serving = ServingProcess(
        extra_args=[
            "--tls-cert",
            str(server.cert),
            "--tls-key",
            str(server.key),
            "--tls-client-ca",
            str(ca.cert),
            "--token-file",
            str(folder / "tokens"),
            "--enforce-eager",
            "--no-retrieval",
            "--data-dir",
            str(folder / "data"),
        ],  # fmt: skip
        log_path=serving_log_dir() / "serving-tls.log",
        security=client_security(
            "127.0.0.1:1",
            tls=True,
            ca_file=files["ca"],
            client_cert=files["cert"],
            client_key=files["key"],
        ),  # fmt: skip
    )
    serving.start(timeout_s=600)
    try:
        yield serving, files
    finally:
        assert serving.stop() == 0, f"see {serving.log_path}"


def _complete(address: str, *connection: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quill", "complete", "examples/fibonacci.py:4:18",
         "--address", address, "--timeout", "300", *connection],
        cwd=ROOT, capture_output=True, text=True, timeout=420,
    )  # fmt: skip


def test_completion_over_mutual_tls_with_a_token_file(tls_serving: tuple) -> None:
    serving, files = tls_serving
    result = _complete(
        serving.address,
        "--tls", "--ca-file", files["ca"], "--client-cert", files["cert"],
        "--client-key", files["key"], "--token-file", files["token"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "return" in result.stdout


def test_without_the_token_or_the_certificate_nothing_is_completed(tls_serving: tuple) -> None:
    serving, files = tls_serving
    tls = ["--tls", "--ca-file", files["ca"]]
    mutual = [*tls, "--client-cert", files["cert"], "--client-key", files["key"]]
    for connection, reason in (
        (mutual, "UNAUTHENTICATED"),  # the local token is not in serving's token file
        ([*tls, "--token-file", files["token"]], "unavailable"),  # no client certificate
    ):
        result = _complete(serving.address, *connection)
        assert "return" not in result.stdout
        assert reason in result.stdout + result.stderr, (reason, result.stdout, result.stderr)


def test_the_token_is_not_stored_by_serving(tls_serving: tuple) -> None:
    serving, files = tls_serving
    token = Path(files["token"]).read_text(encoding="utf-8")
    assert serving.log_path is not None
    assert token not in serving.log_path.read_text(encoding="utf-8", errors="replace")
