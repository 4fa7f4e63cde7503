"""Repair through `quill lsp` with a test command (the `testCommand` argument and the
`repairTestCommand` setting), and insertion points; a scripted Repair servicer stands in for
serving, the tests really run."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from quill.v1 import quill_pb2 as pb
from tests.conftest import lsp_command
from tests.support.fakes import ScriptedRepair, scripted_repair_serving
from tests.support.lsp import execute, open_document

BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\nassert add(2, 3) == 5, f'add(2, 3) is {add(2, 3)}'\n"
WRONG = "    return a * b"
RIGHT = "    return a + b"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "calc.py").write_text(BUGGY)
    (tmp_path / "test_calc.py").write_text(TEST)
    return tmp_path


async def _initialize(client: LanguageClient, root: Path, **options: object) -> None:
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=root.as_uri(),
            initialization_options={"retrieval": False, "repairEngineDeadlineS": 30.0, **options},
        )
    )


def _servicer() -> ScriptedRepair:
    return ScriptedRepair(
        candidates=[
            pb.RepairCandidate(patch=WRONG, score=-0.1, parses=True, names_resolve=True),
            pb.RepairCandidate(patch=RIGHT, score=-0.9, parses=True, names_resolve=True),
        ]
    )


async def test_the_test_command_ranks_the_passing_candidate_first(
    client: LanguageClient, project: Path
) -> None:
    servicer = _servicer()
    uri = (project / "calc.py").as_uri()
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, project, servingAddress=address)
        open_document(client, uri, BUGGY)
        arguments = {"uri": uri, "startLine": 1, "endLine": 1,
                     "testCommand": f"{sys.executable} test_calc.py"}  # fmt: skip
        result = await asyncio.wait_for(execute(client, "quill.repair", arguments), 60)
    # The original's failing output was shown to the model.
    assert "add(2, 3) is -1" in servicer.starts[0].failing_test_output
    first, second = result["candidates"]
    assert (first["patch"], first["testsPass"]) == (RIGHT, True)
    assert first["title"] == "Quill fix 1: return a + b (tests pass)"
    assert (second["patch"], second["testsPass"]) == (WRONG, False)
    assert "tests pass on 1 of 2 candidate(s)" in result["message"]
    assert (project / "calc.py").read_text() == BUGGY  # the user's file is untouched


async def test_a_hanging_test_command_from_the_settings_gives_a_clear_message(
    client: LanguageClient, project: Path
) -> None:
    servicer = _servicer()
    uri = (project / "calc.py").as_uri()
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, project, servingAddress=address,
                          repairTestCommand="sleep 60", repairTestTimeoutS=0.5)  # fmt: skip
        open_document(client, uri, BUGGY)
        result = await asyncio.wait_for(execute(client, "quill.repairLine", uri, 1), 30)
    assert "the test command did not finish within 0.5 s" in result["message"]
    # The repair went on without tests: candidates in the usual order, not marked.
    assert [c["patch"] for c in result["candidates"]] == [WRONG, RIGHT]
    assert all(c["testsPass"] is None for c in result["candidates"])


async def test_an_insertion_goes_after_the_line(client: LanguageClient, project: Path) -> None:
    text = "def total(xs):\n    s = 0\n    for x in xs:\n    return s\n"
    servicer = ScriptedRepair(
        candidates=[pb.RepairCandidate(patch="        s += x", parses=True, names_resolve=True)]
    )
    uri = (project / "calc.py").as_uri()
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, project, servingAddress=address)
        open_document(client, uri, text)
        arguments = {"uri": uri, "startLine": 2, "endLine": 2, "insert": True}
        result = await asyncio.wait_for(execute(client, "quill.repair", arguments), 30)
    assert servicer.starts[0].insert
    (edit,) = result["candidates"][0]["edit"]["documentChanges"][0]["edits"]
    end_of_line = {"line": 2, "character": len("    for x in xs:")}
    assert edit["range"] == {"start": end_of_line, "end": end_of_line}
    assert edit["newText"] == "\n        s += x"
