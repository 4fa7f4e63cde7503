"""Runs at start-up of every Python process the serving process spawns (vLLM's engine core).

If the serving process is killed outright (SIGKILL, the OOM killer), nothing would stop the
engine core and it would keep gigabytes. This asks the kernel to send it SIGTERM when its parent
dies; vLLM's engine core then shuts down and takes its workers with it. Only direct children of
the serving process act: it puts its pid in QUILL_ENGINE_PARENT_PID before starting the engine,
and this folder on PYTHONPATH (see serving/engine/vllm_engine.py).
"""

import os
import sys


def _terminate_with_parent() -> None:
    parent = os.environ.get("QUILL_ENGINE_PARENT_PID")
    if not parent or parent != str(os.getppid()) or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


_terminate_with_parent()
