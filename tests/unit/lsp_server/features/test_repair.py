"""The repair feature of the language server (`quill lsp` driven by pytest-lsp), against
a scripted Repair servicer on a real grpc.aio server; Jedi in the language server is real."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.features.repair import RepairRequest, _parse_arguments
from lsp_server.settings import parse_settings
from quill.v1 import quill_pb2 as pb
from quill_cli.launcher import free_port
from tests.conftest import ROOT, lsp_command
from tests.support.fakes import ScriptedRepair, scripted_repair_serving
from tests.support.lsp import edit, execute, open_document

URI = (ROOT / "tests" / "data" / "repair_buggy.py").as_uri()
BUGGY = """\
import os


def join_all(base, name):
    return os.path.joinn(base, name)
"""
FIX = "    return os.path.join(base, name)"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    # lsprotocol reads any code action that has a `command` as a bare Command (a Command's
    # `command` is a string, a CodeAction's an object); tell them apart properly.
    converter = lsp_client.protocol._converter

    def code_action_or_command(value, _):  # type: ignore[no-untyped-def]
        if isinstance(value.get("command"), str):
            return converter.structure(value, types.Command)
        return converter.structure(value, types.CodeAction)

    converter.register_structure_hook(types.Command | types.CodeAction, code_action_or_command)
    yield
    await lsp_client.shutdown_session()


async def _initialize(client: LanguageClient, **options) -> types.InitializeResult:  # type: ignore[no-untyped-def]
    return await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True),
                workspace=types.WorkspaceClientCapabilities(apply_edit=True),
            ),
            root_uri=ROOT.as_uri(),
            initialization_options={"repairEngineDeadlineS": 30.0, **options},
        )
    )


def _candidates() -> list[pb.RepairCandidate]:
    return [
        pb.RepairCandidate(patch="    return os.path.joinn(base)", score=-0.1, parses=True),
        pb.RepairCandidate(patch=FIX, score=-0.9, parses=True, names_resolve=True),
        pb.RepairCandidate(patch="    return os.path.join(base name)", score=-0.2),
    ]


async def _code_actions(  # type: ignore[no-untyped-def]
    client: LanguageClient, line: int, diagnostics=(), end: tuple[int, int] | None = None, only=None
):
    end_line, end_character = end or (line, 0)
    return await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            range=types.Range(
                start=types.Position(line, 0), end=types.Position(end_line, end_character)
            ),
            context=types.CodeActionContext(diagnostics=list(diagnostics), only=only),
        )
    )


def _repair_tokens(client: LanguageClient) -> list[types.ProgressToken]:
    """Progress tokens of repairs (workspace sync reports progress of its own)."""
    return [token for token in client.progress_reports if str(token).startswith("quill-repair-")]


def _diagnostic(line: int, message: str) -> types.Diagnostic:
    return types.Diagnostic(
        range=types.Range(start=types.Position(line, 11), end=types.Position(line, 25)),
        message=message,
    )


async def test_advertises_code_actions_and_repair_commands(client: LanguageClient) -> None:
    result = await _initialize(client, servingAddress="127.0.0.1:9")
    commands = result.capabilities.execute_command_provider.commands
    assert "quill.repair" in commands and "quill.repairLine" in commands
    kinds = result.capabilities.code_action_provider.code_action_kinds
    assert "quickfix.quill.repair" in kinds


async def test_listing_code_actions_never_starts_decoding(client: LanguageClient) -> None:
    servicer = ScriptedRepair(candidates=_candidates())
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address)
        open_document(client, URI, BUGGY)
        actions = await _code_actions(client, 4, [_diagnostic(4, "no attribute 'joinn'")])
        assert [a.title for a in actions] == ["Repair with Quill"]
        command = actions[0].command
        assert command.command == "quill.repair"
        assert command.arguments[0]["startLine"] == 4 and command.arguments[0]["endLine"] == 4
        assert command.arguments[0]["hint"] == "no attribute 'joinn'"
        # A selection over two lines (ending at the start of a third) offers those two lines.
        actions = await _code_actions(client, 3, end=(5, 0))
        assert [a.title for a in actions] == ["Repair lines 4-5 with Quill"]
        # The cursor alone, without a diagnostic, offers nothing; nor does a foreign `only`.
        assert await _code_actions(client, 4) is None
        only = [types.CodeActionKind.Refactor]
        assert await _code_actions(client, 4, [_diagnostic(4, "x")], only=only) is None
        await asyncio.sleep(0.2)
    assert servicer.starts == []


async def test_repair_line_answers_with_jedi_and_returns_ranked_edits(
    client: LanguageClient,
) -> None:
    servicer = ScriptedRepair(
        queries=[("    return os.path.jo", False), ("    return os.path.joinn(base, nam)", True)],
        candidates=_candidates(),
    )
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address, repairBudget=3)
        open_document(client, URI, BUGGY)
        result = await execute(client, "quill.repairLine", {"uri": URI, "line": 4})
        # The completion engine in the language server answered on the patched file.
        assert list(servicer.answers[0].continuations) == ["in"]
        assert list(servicer.answers[1].unresolved_names) == ["joinn", "nam"]
        start = servicer.starts[0]
        assert (start.start.line, start.end.line, start.budget) == (4, 4, 3)
        assert start.file_path == "tests/data/repair_buggy.py" and not start.unguided
        # Ranked: valid first, then parses, then score.
        patches = [c["patch"] for c in result["candidates"]]
        assert patches == [
            FIX,
            "    return os.path.joinn(base)",
            "    return os.path.join(base name)",
        ]
        assert result["candidates"][0]["title"] == "Quill fix 1: return os.path.join(base, name)"
        change = result["candidates"][0]["edit"]["documentChanges"][0]
        assert change["textDocument"] == {"uri": URI, "version": 1}
        assert change["edits"][0]["range"] == {
            "start": {"line": 4, "character": 0},
            "end": {"line": 4, "character": len("    return os.path.joinn(base, name)")},
        }
        assert change["edits"][0]["newText"] == FIX
        assert "3 candidate" in result["message"]
        # Progress: created, begun, reported, ended.
        (token,) = _repair_tokens(client)
        reports = client.progress_reports[token]
        assert isinstance(reports[0], types.WorkDoneProgressBegin)
        assert any(isinstance(r, types.WorkDoneProgressReport) for r in reports)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
        # The finished repair now shows as ranked code actions with edits (no new decoding).
        actions = await _code_actions(client, 4, [_diagnostic(4, "no attribute 'joinn'")])
        titles = [a.title for a in actions]
        assert titles[0] == "Quill fix 1: return os.path.join(base, name)"
        assert titles[-1] == "Repair with Quill"
        assert actions[0].is_preferred and actions[0].edit is not None
        assert "(does not parse)" in titles[2]
        # A diagnostic and a selection over the repaired line: the candidates are listed once.
        actions = await _code_actions(client, 3, [_diagnostic(4, "x")], end=(4, 10))
        titles = [a.title for a in actions]
        assert sum(title.startswith("Quill fix") for title in titles) == 3
        assert titles[3:] == ["Repair with Quill", "Repair lines 4-5 with Quill"]
    assert len(servicer.starts) == 1


async def test_code_action_command_applies_the_best_candidate(client: LanguageClient) -> None:
    applied: list[types.ApplyWorkspaceEditParams] = []

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        applied.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    servicer = ScriptedRepair(candidates=_candidates())
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address)
        open_document(client, URI, BUGGY)
        actions = await _code_actions(client, 4, [_diagnostic(4, "no attribute 'joinn'")])
        command = actions[0].command
        await execute(client, command.command, *command.arguments)
        await asyncio.sleep(0.1)
    (params,) = applied
    (change,) = params.edit.document_changes
    assert change.edits[0].new_text == FIX
    assert servicer.starts[0].failing_test_output == "no attribute 'joinn'"
    assert any("Applied the best" in m.message for m in client.messages)


@pytest.mark.parametrize(
    ("text", "arguments", "message"),
    [
        (BUGGY, {"uri": URI, "line": 40}, "past the end of the file"),
        ("", {"uri": URI, "line": 0}, "empty"),
        (BUGGY, {"uri": "file:///not/open.py", "line": 0}, "not open"),
        (BUGGY, {"uri": URI, "line": "four"}, "integers"),
        (BUGGY, {"uri": URI, "line": 1, "budget": -2}, "budget"),
    ],
)
async def test_bad_input_is_a_clear_error(client: LanguageClient, text, arguments, message) -> None:  # type: ignore[no-untyped-def]
    servicer = ScriptedRepair()
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address)
        open_document(client, URI, text)
        with pytest.raises(JsonRpcException, match=message):
            await asyncio.wait_for(execute(client, "quill.repairLine", arguments), 10)
    assert servicer.starts == []


async def test_region_longer_than_the_limit_is_refused(client: LanguageClient) -> None:
    await _initialize(client, servingAddress="127.0.0.1:9", repairMaxLines=2)
    open_document(client, URI, BUGGY)
    arguments = {"uri": URI, "startLine": 0, "endLine": 4}
    with pytest.raises(JsonRpcException, match="repairMaxLines is 2"):
        await execute(client, "quill.repair", arguments)


async def test_serving_down_is_a_clear_error_at_once(client: LanguageClient) -> None:
    await _initialize(client, servingAddress=f"127.0.0.1:{free_port()}")
    open_document(client, URI, BUGGY)
    with pytest.raises(JsonRpcException, match="unavailable"):
        await asyncio.wait_for(execute(client, "quill.repairLine", URI, 4), 10)


async def test_bad_python_path_is_a_clear_error(client: LanguageClient) -> None:
    servicer = ScriptedRepair()
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address, pythonPath="/no/such/python")
        open_document(client, URI, BUGGY)
        with pytest.raises(JsonRpcException, match="pythonPath"):
            await execute(client, "quill.repairLine", URI, 4)


async def test_engine_timeout_is_reported_and_decoding_goes_on(client: LanguageClient) -> None:
    servicer = ScriptedRepair(
        queries=[("    return os.pa", False), ("    return os.path.jo", False)],
        candidates=_candidates(),
    )
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address, repairEngineDeadlineS=1e-6)
        open_document(client, URI, BUGGY)
        result = await asyncio.wait_for(execute(client, "quill.repairLine", URI, 4), 20)
    assert [answer.unavailable for answer in servicer.answers] == [True, True]
    assert "did not answer in time" in result["message"]
    assert len(result["candidates"]) == 3


async def test_language_without_engine_is_repaired_unguided(client: LanguageClient) -> None:
    servicer = ScriptedRepair(candidates=[pb.RepairCandidate(patch="x := 1", parses=True)])
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address)
        open_document(client, URI, "let x = 1;\n", language="rust")
        result = await execute(client, "quill.repairLine", URI, 0)
    assert servicer.starts[0].unguided and servicer.starts[0].language == "rust"
    assert result["candidates"][0]["patch"] == "x := 1"


async def _wait_started(servicer: ScriptedRepair) -> None:
    await asyncio.wait_for(servicer.started.wait(), 10)


@contextlib.asynccontextmanager
async def _repair_in_flight(client: LanguageClient, msg_id: str = "repair-in-flight"):  # type: ignore[no-untyped-def]
    """A `quill.repairLine` that serving is still working on; yields (servicer, response)."""
    servicer = ScriptedRepair(delay_s=60, candidates=_candidates())
    async with scripted_repair_serving(servicer) as address:
        await _initialize(client, servingAddress=address)
        open_document(client, URI, BUGGY)
        response = asyncio.wrap_future(
            client.protocol.send_request(
                types.WORKSPACE_EXECUTE_COMMAND,
                types.ExecuteCommandParams(command="quill.repairLine", arguments=[URI, 4]),
                msg_id=msg_id,
            )
        )
        await _wait_started(servicer)
        yield servicer, response


async def test_editing_the_document_cancels_the_repair(client: LanguageClient) -> None:
    async with _repair_in_flight(client) as (servicer, response):
        edit(client, URI, 2, (4, 4), (4, 4), " ")
        result = await asyncio.wait_for(response, 10)
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
    assert result["cancelled"] and "document changed" in result["message"]
    assert result["candidates"] == []


async def test_a_newer_repair_supersedes_the_running_one(client: LanguageClient) -> None:
    async with _repair_in_flight(client) as (servicer, first):
        # Only once the first call waits its 60 s may the next one be quick.
        await asyncio.wait_for(servicer.waiting.wait(), 10)
        servicer.delay_s = 0
        second = asyncio.ensure_future(execute(client, "quill.repairLine", URI, 3))
        first_result = await asyncio.wait_for(first, 10)
        assert first_result["cancelled"] and "newer repair" in first_result["message"]
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
        second_result = await asyncio.wait_for(second, 10)
    assert second_result["cancelled"] is False and len(second_result["candidates"]) == 3


async def test_cancel_request_cancels_the_rpc(client: LanguageClient) -> None:
    async with _repair_in_flight(client, msg_id="repair-to-cancel") as (servicer, response):
        client.cancel_request(types.CancelParams(id="repair-to-cancel"))
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(response, 10)


async def test_progress_cancel_button_cancels_the_rpc(client: LanguageClient) -> None:
    async with _repair_in_flight(client) as (servicer, response):
        (token,) = _repair_tokens(client)
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
        result = await asyncio.wait_for(response, 10)
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
    assert result["cancelled"] and "progress" in result["message"]
    assert isinstance(client.progress_reports[token][-1], types.WorkDoneProgressEnd)


def test_repair_settings_are_validated() -> None:
    settings, problems = parse_settings(
        {"repairBudget": -1, "repairEngineDeadlineS": 0, "repairMaxLines": 0, "pythonPath": 3}
    )
    assert len(problems) == 4
    assert settings.repair_budget == 0 and settings.repair_engine_deadline_s == 2.0
    settings, problems = parse_settings({"repairBudget": 12, "pythonPath": "/usr/bin/python3"})
    assert problems == [] and settings.repair_budget == 12
    assert settings.python_path == "/usr/bin/python3"


@pytest.mark.parametrize(
    ("arguments", "line_command", "message"),
    [
        ({"uri": URI, "line": -1}, True, "line takes integers from 0"),
        ({"uri": URI, "line": 1.5}, True, "line takes integers"),
        ({"uri": URI, "line": 1, "budget": 2**40}, True, "budget takes integers from 0 to 1024"),
        ({"uri": URI, "line": 1, "budget": -1}, True, "budget"),
        ({"uri": URI, "line": 1, "apply": "yes"}, True, "apply takes true or false"),
        ({"uri": URI, "startLine": 2, "endLine": -3}, False, "endLine takes integers from 0"),
        ({"uri": URI, "startLine": 2, "colour": 1}, False, "unknown argument 'colour'"),
        ({"startLine": 2}, False, "uri is required"),
        ({"uri": URI}, False, "startLine is required"),
    ],
)
def test_command_arguments_are_checked_once_naming_each_bad_field(
    arguments: dict[str, object], line_command: bool, message: str
) -> None:
    with pytest.raises(JsonRpcInvalidParams, match=message) as caught:
        _parse_arguments((arguments,), line_command)
    assert caught.value.code == -32602


def test_command_arguments_in_both_forms() -> None:
    assert _parse_arguments((URI, 4), line_command=True) == RepairRequest(URI, 4, 4)
    region = {"uri": URI, "startLine": 1, "endLine": 3, "budget": 8, "hint": "h", "apply": True}
    assert _parse_arguments((region,), line_command=False) == RepairRequest(
        URI, 1, 3, apply=True, hint="h", budget=8
    )
    assert _parse_arguments(({"uri": URI, "startLine": 2},), False) == RepairRequest(URI, 2, 2)
