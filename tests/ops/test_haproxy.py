"""ops/haproxy/haproxy.cfg: what the end-to-end tests run (tests/support/haproxy.py renders it),
valid for Debian's haproxy, and its gRPC health check really asks a gRPC server's health service.
The scale-out end-to-end tests (tests/e2e/test_scale_out_e2e.py) run HAProxy on it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.conftest import ROOT
from tests.support.haproxy import (
    EXAMPLE_LISTEN,
    EXAMPLE_SERVERS,
    EXAMPLE_STATS_SOCKET,
    SERVING_ANSWER,
    grpc_health_check_request,
    render_config,
)

CONFIG = ROOT / "ops" / "haproxy" / "haproxy.cfg"


def test_the_ops_config_is_what_the_tests_run() -> None:
    rendered = render_config(EXAMPLE_LISTEN, EXAMPLE_SERVERS, EXAMPLE_STATS_SOCKET)
    assert CONFIG.read_text() == rendered, "regenerate ops/haproxy/haproxy.cfg (see its header)"
    assert "balance hash var(txn.route)" in rendered and "hash-type consistent" in rendered


def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(binary).exists(), "Debian's haproxy must be installed (scripts/setup.sh test)"
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.read_text().replace(EXAMPLE_STATS_SOCKET, str(tmp_path / "s.sock")))
    result = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("status", "serving"),
    [(health_pb2.HealthCheckResponse.SERVING, True),
     (health_pb2.HealthCheckResponse.NOT_SERVING, False)],
)  # fmt: skip
async def test_the_health_check_bytes_ask_a_real_grpc_server(status: int, serving: bool) -> None:
    """What HAProxy sends and expects, against grpc.aio's own health service."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    await servicer.set("", status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(grpc_health_check_request())
        await writer.drain()
        answer = b""
        while _ANSWERED not in answer:
            answer += await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
    finally:
        await server.stop(0)
    assert (bytes.fromhex(SERVING_ANSWER) in answer) is serving


# The framed HealthCheckResponse: five bytes of gRPC framing (a two-byte message), then field 1.
_ANSWERED = bytes.fromhex("000000000208")
