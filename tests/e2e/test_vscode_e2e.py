"""The VS Code extension (editors/vscode) end to end in real VS Code.

code-server 4.100.3 (VS Code 1.100.3) runs the packaged .vsix; Debian's headless Chromium, driven by
playwright-core (editors/vscode/e2e/drive.mjs), opens a Python file, types, waits for the ghost
text of a suggestion from the real `quill lsp` and the real serving process on the real model,
accepts it with Tab and saves. The test then checks the file on disk, the language server's
`quill.stats` (written by "Quill: Show Stats") and serving's acceptance counter.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quill import envs
from quill_cli.launcher import ServingProcess, free_port
from tests.conftest import ROOT
from tests.e2e.conftest import serving_log_dir

pytestmark = pytest.mark.e2e

EXTENSION_DIR = ROOT / "editors" / "vscode"
VSIX = EXTENSION_DIR / "quill-vscode.vsix"
DRIVER = EXTENSION_DIR / "e2e" / "drive.mjs"
SAMPLE = ROOT / "tests" / "data" / "vscode" / "sample.py"
SHARED = ROOT.parent / "shared"
CHROMIUM = Path("/usr/bin/chromium")
TYPED = " +"
SCREENSHOT = ROOT / "docs" / "vscode-suggestion.png"
# Everything the vsix is built from; the package is rebuilt when any of these changes.
VSIX_INPUTS = [
    "package.json",
    "package-lock.json",
    "esbuild.mjs",
    "tsconfig.json",
    ".vscodeignore",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
]
ACCEPTED_METRIC = "quill_suggestions_accepted_total"


def needs_tools(test):  # type: ignore[no-untyped-def]
    """The editor tests must run in CI: missing tools are a failure, never a skip."""

    def check_then_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert shutil.which("npm"), "needs npm (node 20)"
        assert CHROMIUM.exists(), "needs Debian's chromium (scripts/setup.sh test installs it)"
        return test(*args, **kwargs)

    return functools.wraps(test)(check_then_run)


def code_server_dir() -> Path:
    return envs.cache_dir() / "code-server"


def run(argv: list[str], cwd: Path, timeout_s: float, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(EXTENSION_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def install_node_modules() -> None:
    """npm ci, skipped when the lock file did not change."""
    lock = EXTENSION_DIR / "package-lock.json"
    lock_stamp = EXTENSION_DIR / "node_modules" / ".quill-lock-sha256"
    lock_hash = digest([lock])
    if not lock_stamp.exists() or lock_stamp.read_text() != lock_hash:
        run(["npm", "ci", "--no-audit", "--no-fund"], EXTENSION_DIR, 600)
        lock_stamp.write_text(lock_hash)


def build_vsix() -> Path:
    """npm ci + build + package, each skipped when its inputs did not change."""
    install_node_modules()
    inputs = [EXTENSION_DIR / name for name in VSIX_INPUTS]
    inputs += sorted((EXTENSION_DIR / "src").rglob("*.ts"))
    vsix_stamp = EXTENSION_DIR / "node_modules" / ".quill-vsix-sha256"
    vsix_hash = digest(inputs)
    if not VSIX.exists() or not vsix_stamp.exists() or vsix_stamp.read_text() != vsix_hash:
        run(["npm", "run", "package"], EXTENSION_DIR, 600)
        vsix_stamp.write_text(vsix_hash)
    return VSIX


def install_code_server() -> Path:
    """code-server from the npm registry into the cache (about 1.5 min), reused when present."""
    dest = code_server_dir()
    binary = dest / "node_modules" / ".bin" / "code-server"
    if binary.exists():
        return binary
    script = SHARED / "tools" / "install-code-server.sh"
    assert script.exists(), f"no {script} to install code-server with"
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run(["sh", str(script), str(partial)], partial.parent, 900)
    partial.rename(dest)
    assert binary.exists()
    return binary


def accepted_total(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(ACCEPTED_METRIC) and not line.startswith("#")
    )


def kill_tagged(tag: str) -> None:
    """SIGKILL every process whose environment carries our unique tag (code-server, its
    extension host and language server, node and chromium), and nothing else."""
    needle = f"QUILL_E2E_TAG={tag}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"code-server exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"code-server did not answer {url} in {timeout_s} s")


@pytest.fixture
def tag() -> Iterator[str]:
    value = uuid.uuid4().hex
    try:
        yield value
    finally:
        kill_tagged(value)


def test_extension_typechecks_lints_and_passes_its_unit_tests() -> None:
    """The bundle is built with esbuild, which does not check types: tsc, eslint and the
    extension's own unit tests (editors/vscode/test) run here."""
    assert shutil.which("npm"), "needs npm (node 20)"
    install_node_modules()
    run(["npm", "run", "lint"], EXTENSION_DIR, 300)
    run(["npm", "test"], EXTENSION_DIR, 300)


@needs_tools
def test_vscode_accepts_a_real_suggestion(
    real_serving: ServingProcess, tmp_path: Path, tag: str
) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    vsix = build_vsix()
    timings["vsix"] = time.monotonic() - started
    code_server = install_code_server()
    timings["code_server_install"] = time.monotonic() - started - timings["vsix"]

    log_dir = serving_log_dir() / "vscode"
    log_dir.mkdir(parents=True, exist_ok=True)
    user_data, extensions = tmp_path / "user-data", tmp_path / "extensions"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    source = workspace / "sample.py"
    original = SAMPLE.read_text().rstrip("\n")  # the cursor goes to the end of `return a`
    source.write_text(original)
    stats_file = tmp_path / "stats.json"

    env = os.environ.copy()  # carries PYTHONPATH=<repo root> (tests/conftest.py)
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        QUILL_VSCODE_STATS_FILE=str(stats_file),
        QUILL_E2E_TAG=tag,
    )
    common = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    run([str(code_server), *common, "--install-extension", str(vsix)], tmp_path, 180, env)
    settings = {
        "security.workspace.trust.enabled": False,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "editor.inlineSuggest.enabled": True,
        "files.autoSave": "off",
        "quill.server.command": [sys.executable, "-m", "quill", "lsp"],
        "quill.server.address": real_serving.address,
        "quill.completionMode": "single",
        "quill.trace.server": "messages",
    }
    (user_data / "User").mkdir(parents=True, exist_ok=True)
    (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))

    port = free_port()
    argv = [
        str(code_server),
        "--auth",
        "none",
        "--bind-addr",
        f"127.0.0.1:{port}",
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        *common,
        str(workspace),
    ]
    accepted_before = accepted_total(real_serving.metrics_url)
    with open(log_dir / "code-server.log", "wb") as log:
        server = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", server, 60)
        timings["code_server_start"] = time.monotonic() - started - sum(timings.values())
        observations = drive(tmp_path, log_dir, port, stats_file, env)
        timings["browser"] = time.monotonic() - started - sum(timings.values())

        ghost = observations["ghostText"]
        assert ghost and ghost.strip(), observations
        saved = source.read_text()
        expected_line = "    return a" + TYPED + ghost.splitlines()[0]
        assert expected_line.rstrip() in saved, f"{saved!r} lacks {expected_line!r}"
        assert saved.startswith(original + TYPED)

        stats = observations["stats"]
        assert stats["accepted"] >= 1, stats
        assert stats["servingAvailable"] is True, stats

        deadline = time.monotonic() + 15
        while accepted_total(real_serving.metrics_url) <= accepted_before:
            assert time.monotonic() < deadline, f"{ACCEPTED_METRIC} did not increase"
            time.sleep(0.5)
        timings["total"] = time.monotonic() - started
        print(
            f"\nVS Code e2e timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}"
        )
        print(f"browser timings (s): {observations['timings']}; suggestion: {ghost!r}")
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def drive(
    tmp_path: Path, log_dir: Path, port: int, stats_file: Path, env: dict[str, str]
) -> dict[str, Any]:
    out = tmp_path / "driver.json"
    params = {
        "url": f"http://127.0.0.1:{port}/",
        "fileName": "sample.py",
        "typeText": TYPED,
        "statsFile": str(stats_file),
        "out": str(out),
        "screenshot": str(SCREENSHOT),
        "failureScreenshot": str(log_dir / "vscode-failure.png"),
        "chromium": str(CHROMIUM),
        "tag": env["QUILL_E2E_TAG"],
        "timeoutMs": 90_000,
    }
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    driver_env = dict(env, QUILL_E2E_PARAMS=json.dumps(params))
    process = subprocess.Popen(
        ["node", str(DRIVER)], cwd=EXTENSION_DIR, env=driver_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the browser driver did not finish in 300 s:\n{output.decode()}")
    text = output.decode(errors="replace")
    assert out.exists(), f"the driver wrote nothing ({process.returncode}):\n{text}"
    observations: dict[str, Any] = json.loads(out.read_text())
    assert observations["error"] is None, (
        f"{observations['error']}\nnotifications: {observations['notifications']}\n"
        f"screenshot: {params['failureScreenshot']}\ndriver output:\n{text}"
    )
    return observations
