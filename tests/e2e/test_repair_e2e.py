"""Repair end to end: real language server (Jedi) -> real serving (guided decoder) -> real vLLM."""

from __future__ import annotations

import ast
import asyncio
import json
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.repair.client import place_patch
from quill_cli.launcher import ServingProcess
from tests.conftest import ROOT, lsp_command
from tests.support.lsp import execute, open_document

pytestmark = pytest.mark.e2e

# A planted bug: a misspelled method name on line 13 (1-based).
BUGGY = """\
class Inventory:
    def __init__(self):
        self.items = {}

    def add_item(self, name, count):
        self.items[name] = self.items.get(name, 0) + count

    def total(self):
        return sum(self.items.values())


def restock(inventory, name):
    inventory.add_itme(name, 10)
    return inventory.total()
"""
BUG_LINE = 12  # zero-based
URI = (ROOT / "tests" / "data" / "repair_e2e_inventory.py").as_uri()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


def _parses(patch: str) -> bool:
    try:
        ast.parse(place_patch(BUGGY.split("\n"), BUG_LINE, BUG_LINE, patch)[0])
    except SyntaxError:
        return False
    return True


async def test_repair_line_through_the_language_server(
    client: LanguageClient, real_serving: ServingProcess
) -> None:
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            ),
            root_uri=ROOT.as_uri(),
            initialization_options={
                "servingAddress": real_serving.address,
                # Below serving's own deadline per query (5 s), which would count a later
                # answer as a failure; the decoding may take long on a loaded CI machine.
                "repairEngineDeadlineS": 4.0,
                "repairTimeoutS": 600.0,
            },
        )
    )
    open_document(client, URI, BUGGY)
    result = await asyncio.wait_for(
        execute(client, "quill.repairLine", {"uri": URI, "line": BUG_LINE, "budget": 4}), 700
    )
    candidates = result["candidates"]
    print(json.dumps([(c["patch"], c["score"], c["parses"]) for c in candidates], indent=1))
    assert candidates, result["message"]
    # Every candidate parses in the file (serving never sends one that does not), and all are
    # distinct from each other and from the buggy line.
    for candidate in candidates:
        assert candidate["parses"] and _parses(candidate["patch"]), candidate
    patches = [c["patch"].strip() for c in candidates]
    assert len(set(patches)) == len(patches) and "inventory.add_itme(name, 10)" not in patches
    assert "distinct of" in result["message"]
    flags = [(c["parses"] and c["namesResolve"], c["parses"]) for c in candidates]
    assert flags == sorted(flags, reverse=True)
    # The guided decoder asked the language server's Jedi, which answered.
    assert result["engineQueries"] > 0
    assert result["engineUnavailable"] < result["engineQueries"]
    # Each candidate's edit replaces exactly the buggy line.
    edit = candidates[0]["edit"]["documentChanges"][0]["edits"][0]
    assert edit["range"]["start"] == {"line": BUG_LINE, "character": 0}
    assert edit["range"]["end"]["line"] == BUG_LINE
    (token,) = [t for t in client.progress_reports if str(t).startswith("quill-repair-")]
    reports = client.progress_reports[token]
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)


TEST = """\
from inventory import Inventory, restock

assert restock(Inventory(), "apples") == 10
"""


async def test_quill_repair_command_line(real_serving: ServingProcess, tmp_path: Path) -> None:
    (tmp_path / "inventory.py").write_text(BUGGY)
    (tmp_path / "test_inventory.py").write_text(TEST)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quill", "repair", f"inventory.py:{BUG_LINE + 1}",
        "--budget", "3", "--json", "out.json", "--address", real_serving.address,
        "--engine-deadline", "4", "--timeout", "600",
        "--test", f"{sys.executable} test_inventory.py",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 700)
    assert process.returncode == 0, stderr.decode()
    written = json.loads((tmp_path / "out.json").read_text())
    patches = [c["patch"] for c in written["candidates"]]
    assert stdout.decode().startswith(f"# candidate 1 of {len(patches)}: score ")
    for candidate in written["candidates"]:
        assert candidate["diff"] in stdout.decode()
    assert all(_parses(patch) for patch in patches), patches
    # Every candidate ran the tests in a copy; passing ones rank first; the file is untouched.
    passes = [c["testsPass"] for c in written["candidates"]]
    assert all(p in (True, False) for p in passes) and passes == sorted(passes, reverse=True)
    assert "AttributeError" in written["originalTestOutput"]
    assert (tmp_path / "inventory.py").read_text() == BUGGY
