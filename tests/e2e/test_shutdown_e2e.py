"""Stopping the serving process stops every engine process it started: cleanly on SIGTERM and
SIGINT, and even when serving is killed outright (SIGKILL gives it no chance to shut down)."""

from __future__ import annotations

import signal

import psutil
import pytest

from quill_cli.launcher import ServingProcess
from tests.e2e.conftest import serving_log_dir

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGTERM, 0), (signal.SIGINT, 0), (signal.SIGKILL, -signal.SIGKILL)],
)
def test_signal_leaves_no_engine_process(signum: int, exit_code: int) -> None:
    name = signal.Signals(signum).name.lower()
    serving = ServingProcess(log_path=serving_log_dir() / f"serving-{name}.log")
    serving.start(timeout_s=900)
    assert serving.process is not None
    children = psutil.Process(serving.process.pid).children(recursive=True)
    try:
        # vLLM's engine core runs in a child process; that is what must not outlive us.
        assert children, "the engine core should run in a child process"
        serving.process.send_signal(signum)
        assert serving.process.wait(120) == exit_code
        gone, alive = psutil.wait_procs(children, timeout=60)
        assert alive == [], [(p.pid, p.name()) for p in alive]
    finally:
        for child in children:
            if child.is_running():
                child.kill()
        serving.stop()
