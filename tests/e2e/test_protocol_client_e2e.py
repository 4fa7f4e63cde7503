"""A second, independent protocol client: Microsoft's vscode-languageserver-protocol (Node)
against the real language server and real serving, so the server is not only tested against
our own Python clients."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from quill_cli.launcher import ServingProcess
from tests.conftest import ROOT, lsp_command

pytestmark = pytest.mark.e2e

CLIENT_DIR = ROOT / "tests" / "data" / "protocol_client"


def _install_client() -> None:
    npm = shutil.which("npm")
    assert npm, "node and npm are needed for the second protocol client"
    if not (CLIENT_DIR / "node_modules" / "vscode-languageserver-protocol").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=CLIENT_DIR, check=True, timeout=600,
        )  # fmt: skip


def test_node_protocol_client_gets_capabilities_and_a_completion(
    real_serving: ServingProcess, tmp_path: Path
) -> None:
    _install_client()
    source = tmp_path / "sample.py"
    source.write_text("def add(a, b):\n    return a +")
    result = subprocess.run(
        ["node", str(CLIENT_DIR / "client.js"), real_serving.address, source.as_uri(),
         str(source), "--", *lsp_command()],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    capabilities = seen["capabilities"]
    assert capabilities["inlineCompletionProvider"] is not None
    assert capabilities["textDocumentSync"]["change"] == 2  # incremental
    assert "quill.acceptCompletion" in capabilities["executeCommandProvider"]["commands"]
    assert seen["serverInfo"]["name"] == "quill"
    items = seen["items"]
    assert len(items) == 1 and items[0]["insertText"].strip()
    assert items[0]["range"]["start"] == seen["position"]
    assert seen["statsAfterAccept"]["accepted"] == 1
    assert seen["badPosition"]["code"] == -32602  # InvalidParams, and the server kept serving
