"""SIGTERM stops the serving process and every engine process it started."""

from __future__ import annotations

import signal

import psutil
import pytest

from quill.launcher import ServingProcess
from tests.e2e.conftest import serving_log_dir

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_leaves_no_engine_process(signum: int) -> None:
    serving = ServingProcess(log_path=serving_log_dir() / "serving-shutdown.log")
    serving.start(timeout_s=900)
    assert serving.process is not None
    parent = psutil.Process(serving.process.pid)
    children = parent.children(recursive=True)
    try:
        # vLLM's engine core runs in a child process; that is what must not outlive us.
        assert children, "the engine core should run in a child process"
        serving.process.send_signal(signum)
        code = serving.process.wait(120)
        assert code == 0
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [(p.pid, p.name()) for p in alive]
    finally:
        for child in children:
            if child.is_running():
                child.kill()
        serving.stop()


def test_engine_processes_stop_when_serving_is_killed_outright() -> None:
    """SIGKILL gives serving no chance to shut down; the engine core must not outlive it."""
    serving = ServingProcess(log_path=serving_log_dir() / "serving-sigkill.log")
    serving.start(timeout_s=900)
    assert serving.process is not None
    children = psutil.Process(serving.process.pid).children(recursive=True)
    try:
        assert children
        serving.process.kill()
        serving.process.wait(30)
        gone, alive = psutil.wait_procs(children, timeout=60)
        assert alive == [], [(p.pid, p.name()) for p in alive]
    finally:
        for child in children:
            if child.is_running():
                child.kill()
