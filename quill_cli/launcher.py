"""Start a `quill serve` subprocess, wait until it is SERVING, stop it cleanly.

Used by the benchmarks and the end-to-end tests; imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quill.channel import ClientSecurity, open_blocking_channel


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_serving(
    address: str,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    security: ClientSecurity | None = None,
) -> None:
    """Until health says SERVING (health needs no token; `security` gives TLS if serving has it)."""
    deadline = time.monotonic() + timeout_s
    with open_blocking_channel(address, security) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"serving exited with code {process.returncode} while starting")
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"serving at {address} was not SERVING after {timeout_s:.0f} s")


class ServingProcess:
    """`quill serve` as users start it: it authenticates clients with the local token it creates
    (or the --token-file among `extra_args`), which clients on this machine find by themselves
    (quill/channel.py); `security` is how this launcher reaches it (TLS, when serving has it)."""

    def __init__(
        self,
        extra_args: list[str] | None = None,
        log_path: Path | None = None,
        security: ClientSecurity | None = None,
    ) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.metrics_address = f"127.0.0.1:{free_port()}"
        self.extra_args = extra_args or []
        self.log_path = log_path
        self.security = security
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_address}/metrics"

    def start(self, timeout_s: float = 600) -> ServingProcess:
        argv = [
            sys.executable, "-m", "quill", "serve",
            "--address", self.address,
            "--metrics-address", self.metrics_address,
            *self.extra_args,
        ]  # fmt: skip
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=os.environ.copy())
        try:
            wait_for_serving(self.address, timeout_s, self.process, self.security)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
