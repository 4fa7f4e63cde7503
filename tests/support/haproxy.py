"""HAProxy (Debian's binary) in front of serving replicas, as ops/haproxy/haproxy.cfg configures it:
the config is rendered here, `ops/haproxy/haproxy.cfg` is this rendering for the example addresses
(tests/ops/test_haproxy.py checks they agree), and the end-to-end tests start the binary on it.

- Clients speak HTTP/2 (gRPC) to the frontend; HAProxy speaks HTTP/2 to each replica.
- Affinity: `balance hash` on the workspace header combined with the bearer token (which names
  the tenant), `hash-type consistent`: one workspace keeps one replica while it is up, and a
  replica leaving or coming back moves only the workspaces that hash to it. A call without the
  workspace header (health checks, reflection) goes round robin.
- Health: a real `grpc.health.v1.Health/Check` over HTTP/2 every second (a TCP check sends the
  request's bytes and expects the framed SERVING answer), so a replica that is loading, failing
  or shutting down (NOT_SERVING) leaves the ring within seconds, and comes back once SERVING.
- A call that cannot connect to its replica (killed, not yet marked down) is sent to another one
  at once (`retries` with `option redispatch`); a call already streaming from a replica that dies
  fails, and the client's next call goes to a live one.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from quill.grpc_metadata import ROUTING_HEADERS

# The example ops/haproxy/haproxy.cfg is rendered for these.
EXAMPLE_LISTEN = "127.0.0.1:50051"
EXAMPLE_SERVERS = ("127.0.0.1:50061", "127.0.0.1:50062")
EXAMPLE_STATS_SOCKET = "/run/haproxy/quill.sock"
SERVING_ANSWER = "00000000020801"  # gRPC frame of HealthCheckResponse{status: SERVING}


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: str | int, value: str) -> bytes:
    """An HPACK header field without indexing, without Huffman coding (RFC 7541, 6.2.2); the
    name is an index of the static table, or a literal name."""
    data = value.encode()
    if isinstance(name, int):
        prefix = bytes([name]) if name < 15 else bytes([0x0F, name - 15])
    else:
        prefix = b"\x00" + bytes([len(name)]) + name.encode()
    return prefix + bytes([len(data)]) + data


def grpc_health_check_request() -> bytes:
    """The bytes of one HTTP/2 connection asking grpc.health.v1.Health/Check for the whole
    server: the client preface, an empty SETTINGS frame, HEADERS and DATA on stream 1."""
    headers = (
        b"\x83\x86"  # :method POST, :scheme http (static table 3 and 6)
        + _literal(4, "/grpc.health.v1.Health/Check")  # :path
        + _literal(1, "localhost")  # :authority
        + _literal(31, "application/grpc")  # content-type
        + _literal("te", "trailers")
    )
    message = b"\x00\x00\x00\x00\x00"  # an empty HealthCheckRequest, uncompressed
    return (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _frame(0x4, 0x0, 0, b"")  # SETTINGS
        + _frame(0x1, 0x4, 1, headers)  # HEADERS, END_HEADERS
        + _frame(0x0, 0x1, 1, message)  # DATA, END_STREAM
    )


def render_config(listen: str, servers: Sequence[str], stats_socket: str) -> str:
    workspace, tenant = ROUTING_HEADERS
    server_lines = "\n".join(
        f"  server serving-{number} {address}" for number, address in enumerate(servers, start=1)
    )
    return f"""\
# HAProxy in front of Quill serving replicas (gRPC over HTTP/2) with workspace affinity.
# Rendered by tests/support/haproxy.py, which the end-to-end tests run (tests/e2e/
# test_scale_out_e2e.py); ops/README.md explains it, and how the same topology maps to Envoy.
global
  stats socket {stats_socket} mode 600 level admin
  log stderr format raw local0 notice

defaults
  mode http
  log global
  timeout connect 2s
  # Language servers keep one HTTP/2 connection open for hours; completions stream.
  timeout client 1h
  timeout server 1h
  timeout check 2s
  # A call that cannot connect to its replica goes to another one at once.
  retries 2
  option redispatch 1

frontend quill
  bind {listen} proto h2
  default_backend quill_serving

backend quill_serving
  # One workspace of one tenant (the bearer token names it) keeps one replica while it is up.
  http-request set-var(txn.tenant) req.hdr({tenant})
  http-request set-var(txn.route) req.hdr({workspace}),concat(|,txn.tenant)
  balance hash var(txn.route)
  hash-type consistent
  # grpc.health.v1.Health/Check over HTTP/2, answered SERVING (tests/support/haproxy.py).
  option tcp-check
  tcp-check connect
  tcp-check send-binary {grpc_health_check_request().hex()}
  tcp-check expect binary {SERVING_ANSWER}
  default-server proto h2 check inter 1s fall 2 rise 1
{server_lines}
"""


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=0.5):
        return True
    return False


class HaproxyProcess:
    """Debian's haproxy on a rendered config; start, stop, restart, ask which servers are up."""

    def __init__(self, listen: str, servers: Sequence[str], folder: Path) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        assert Path(binary).exists(), "Debian's haproxy must be installed (scripts/setup.sh test)"
        self.binary = binary
        self.listen = listen
        self.servers = list(servers)
        self.socket = folder / "haproxy.sock"
        self.config = folder / "haproxy.cfg"
        self.config.write_text(render_config(listen, servers, str(self.socket)))
        self.log_path = folder / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20) -> HaproxyProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout_s
        while not _reachable(self.listen):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start; see {self.log_path}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None

    def up_servers(self) -> set[str]:
        """Addresses HAProxy's health checks see up now."""
        with socket.socket(socket.AF_UNIX) as admin:
            admin.connect(str(self.socket))
            admin.sendall(b"show servers state quill_serving\n")
            answer = b""
            while chunk := admin.recv(65536):
                answer += chunk
        up = set()
        for line in answer.decode().splitlines():
            fields = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state ... srv_port (field 18)
            if len(fields) > 18 and fields[1] == "quill_serving" and fields[5] == "2":
                up.add(f"{fields[4]}:{fields[18]}")
        return up

    def wait_until(self, up: set[str], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.up_servers() != up:
            if time.monotonic() > deadline:
                raise TimeoutError(f"haproxy sees {self.up_servers()} up, not {up}")
            time.sleep(0.2)
