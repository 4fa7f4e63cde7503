"""Repair with Quill: code actions and commands that run a guided repair for a region of lines.

How the pieces fit, and why:
- `textDocument/codeAction` never starts decoding (editors ask for code actions on every cursor
  move). On a diagnostic or a selection it offers "Repair with Quill", whose command is
  `quill.repair`. Once a repair of that region has finished for the current document version,
  the same request lists its candidates as ranked code actions with their edits, so any editor's
  own code-action menu shows them.
- `quill.repair` (region) and `quill.repairLine` (the cursor's line) run the repair with a
  `$/progress` notification and return the ranked candidates with a WorkspaceEdit each. With
  `apply` (what the code action sets) the server applies the best one through
  `workspace/applyEdit`: a code action's command result never reaches the user, so the server
  has to act. Editor commands pass `apply: false` and let the user pick (VS Code QuickPick,
  Neovim vim.ui.select); both then apply the chosen edit.
- Lazy `codeAction/resolve` was not used: a resolve returns one edit with no progress and no
  way to cancel, and a repair takes seconds to minutes on a CPU.
- Cancellation: `$/cancelRequest`, the progress' cancel button, a newer repair of the same
  document and any edit of the document cancel the gRPC call, which aborts serving's engine
  requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import converters, types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.workspace import TextDocument

from lsp_server.methods import REPAIR_COMMAND, REPAIR_LINE_COMMAND
from lsp_server.options import checked, structure_arguments
from lsp_server.progress import WorkDoneProgress
from lsp_server.repair.client import (
    RepairError,
    RepairInputError,
    RepairResult,
    check_region,
    run_repair,
)
from lsp_server.repair.jedi_oracle import JediOracle, JediWorker
from lsp_server.repair.name_oracle import NameOracle
from lsp_server.server import QuillLanguageServer
from lsp_server.workspace_identity import path_of
from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

# Sub-kinds of quickfix, so clients that filter on quickfix see them.
START_KIND = "quickfix.quill.repair"
CANDIDATE_KIND = "quickfix.quill.candidate"
# Candidates listed as code actions (the rest stay in the command's result).
_MAX_CANDIDATE_ACTIONS = 5
_LANGUAGES_WITH_ENGINE = {"python"}
_converter = converters.get_converter()


class RepairFailedError(JsonRpcException):
    """LSP RequestFailed (-32803): the request was valid but the repair could not run."""

    CODE = -32803


@dataclass(frozen=True)
class RepairRequest:
    uri: str
    start_line: int
    end_line: int
    apply: bool = False
    # Diagnostic messages or failing-test output, given to the model as a hint.
    hint: str = ""
    budget: int | None = None
    unguided: bool = False


@dataclass
class FinishedRepair:
    request: RepairRequest
    version: int | None
    text: str
    result: RepairResult


@dataclass
class RunningRepair:
    task: asyncio.Future[RepairResult]
    # Why it was cancelled by the server (None: not cancelled, or cancelled by the client).
    cancel_reason: str | None = None


@dataclass
class RepairFeature:
    """Per-server state of the repair feature."""

    server: QuillLanguageServer
    running: dict[str, RunningRepair] = field(default_factory=dict)
    finished: dict[str, FinishedRepair] = field(default_factory=dict)
    # One Jedi environment and thread per (interpreter setting, workspace root).
    workers: dict[tuple[str, str], JediWorker] = field(default_factory=dict)

    def engine_for(self, uri: str, language: str) -> NameOracle | None:
        """Jedi for Python files; None (unguided) for languages without an engine yet."""
        if language not in _LANGUAGES_WITH_ENGINE:
            return None
        root = path_of(self.server.workspace.root_uri or "") or None
        key = (self.server.settings.python_path, str(root or ""))
        worker = self.workers.get(key)
        if worker is None:
            try:
                worker = JediOracle(
                    python=self.server.settings.python_path or None, project_root=root
                ).worker
            except ValueError as error:
                raise RepairFailedError(f"pythonPath: {error}") from error
            worker.warm_up()
            self.workers[key] = worker
        return JediOracle(path=path_of(uri) or None, worker=worker)

    def document_changed(self, uri: str) -> None:
        self.finished.pop(uri, None)
        self.cancel(uri, "the document changed")

    def cancel(self, uri: str, reason: str) -> None:
        running = self.running.get(uri)
        if running is not None and not running.task.done():
            running.cancel_reason = reason
            running.task.cancel()

    async def run(self, request: RepairRequest) -> dict[str, Any]:
        ls = self.server
        document = ls.workspace.text_documents.get(request.uri)
        if document is None:
            raise JsonRpcInvalidParams(f"{request.uri} is not open in the language server")
        text = document.source
        start = self._start_message(request, document)
        client = ls.serving_client()
        if not client.available:
            raise RepairFailedError(f"serving at {client.address} is unavailable")
        engine = None if start.unguided else self.engine_for(request.uri, start.language)
        self.cancel(request.uri, "a newer repair of this document started")
        progress = WorkDoneProgress(
            ls,
            f"Quill repair: lines {request.start_line + 1}-{request.end_line + 1}",
            token_prefix="quill-repair",
        )
        await progress.begin("sampling", cancellable=True)

        def report(state: pb.RepairProgress) -> None:
            budget = max(state.budget, 1)
            progress.report(
                f"{state.samples_done}/{state.budget} samples", 100 * state.samples_done // budget
            )

        task = asyncio.ensure_future(
            run_repair(
                client.stub,
                start,
                engine,
                on_progress=report,
                metadata=routing_metadata(start.workspace_id),
                engine_deadline_s=ls.settings.repair_engine_deadline_s,
                timeout_s=ls.settings.repair_timeout_s,
            )
        )
        running = RunningRepair(task)
        self.running[request.uri] = running
        progress.on_cancel(lambda: self.cancel(request.uri, "cancelled from the progress"))
        started = time.perf_counter()
        try:
            result = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                progress.end("cancelled")
                raise  # the client cancelled this request ($/cancelRequest)
            reason = running.cancel_reason or "cancelled"
            progress.end(f"cancelled: {reason}")
            return {"candidates": [], "cancelled": True, "message": f"Repair cancelled: {reason}."}
        except RepairError as error:
            progress.end("failed")
            raise RepairFailedError(f"Quill repair failed: {error}") from error
        finally:
            if self.running.get(request.uri) is running:
                del self.running[request.uri]
        seconds = time.perf_counter() - started
        finished = FinishedRepair(request, document.version, text, result)
        self.finished[request.uri] = finished
        answer = self._answer(finished, document, seconds)
        progress.end(answer["message"])
        logger.info(
            "repair of %s lines %d-%d: %d candidates in %.1f s",
            start.file_path,
            request.start_line + 1,
            request.end_line + 1,
            len(result.candidates),
            seconds,
        )
        if request.apply:
            await self._apply_best(finished, answer)
        return answer

    def _start_message(self, request: RepairRequest, document: TextDocument) -> pb.RepairStart:
        settings = self.server.settings
        text = document.source
        if len(text.encode("utf-8", "surrogatepass")) > settings.max_document_bytes:
            raise JsonRpcInvalidParams(
                f"the document is larger than maxDocumentBytes ({settings.max_document_bytes})"
            )
        try:
            check_region(text, request.start_line, request.end_line)
        except RepairInputError as error:
            raise JsonRpcInvalidParams(f"cannot repair: {error}") from error
        lines = request.end_line - request.start_line + 1
        if lines > settings.repair_max_lines:
            raise JsonRpcInvalidParams(
                f"cannot repair {lines} lines at once (repairMaxLines is "
                f"{settings.repair_max_lines})"
            )
        language = document.language_id or ""
        return pb.RepairStart(
            workspace_id=self.server.workspace_id(),
            file_path=self.server.relative_path(request.uri),
            language=language,
            text=text,
            start=pb.Position(line=request.start_line),
            end=pb.Position(line=request.end_line),
            failing_test_output=request.hint,
            budget=request.budget if request.budget is not None else settings.repair_budget,
            unguided=request.unguided or language not in _LANGUAGES_WITH_ENGINE,
        )

    def _answer(
        self, finished: FinishedRepair, document: TextDocument, seconds: float
    ) -> dict[str, Any]:
        result = finished.result
        candidates = [
            {
                "rank": rank,
                "title": candidate_title(rank, candidate),
                "patch": candidate.patch,
                "score": candidate.score,
                "parses": candidate.parses,
                "namesResolve": candidate.names_resolve,
                "edit": _converter.unstructure(
                    candidate_edit(document, finished, candidate),
                    unstructure_as=types.WorkspaceEdit,
                ),
            }
            for rank, candidate in enumerate(result.candidates, start=1)
        ]
        notes = []
        if result.queries and result.engine_unavailable == result.queries:
            notes.append("the completion engine did not answer in time, so decoding was unguided")
        elif result.engine_unavailable:
            notes.append(
                f"the completion engine missed its deadline on {result.engine_unavailable} of "
                f"{result.queries} queries"
            )
        if candidates:
            message = f"Quill found {len(candidates)} candidate patch(es) in {seconds:.1f} s"
        else:
            message = f"Quill found no candidate patch in {seconds:.1f} s"
        if notes:
            message += " (" + "; ".join(notes) + ")"
        done = result.done
        return {
            "candidates": candidates,
            "cancelled": False,
            "message": message + ".",
            "seconds": seconds,
            "model": done.model if done is not None else "",
            "engineQueries": result.queries,
            "engineUnavailable": result.engine_unavailable,
        }

    async def _apply_best(self, finished: FinishedRepair, answer: dict[str, Any]) -> None:
        ls = self.server
        if not answer["candidates"]:
            ls.notify_user(answer["message"], False)
            return
        best = answer["candidates"][0]
        edit = _converter.structure(best["edit"], types.WorkspaceEdit)
        response = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label="Quill repair")
        )
        if not response.applied:
            ls.notify_user(
                f"Quill repair: the editor did not apply the patch ({response.failure_reason})",
                True,
            )
            return
        ls.notify_user(
            f"{answer['message']} Applied the best; undo to get the original back.", False
        )

    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        only = params.context.only
        if only and not any(START_KIND.startswith(kind) for kind in only):
            return None
        uri = params.text_document.uri
        document = self.server.workspace.text_documents.get(uri)
        if document is None or not document.source.strip():
            return None
        regions: dict[tuple[int, int], list[str]] = {}
        for diagnostic in params.context.diagnostics:
            regions.setdefault(_lines_of(diagnostic.range), []).append(diagnostic.message)
        if params.range.start != params.range.end:
            regions.setdefault(_lines_of(params.range), [])
        actions: list[types.CodeAction] = []
        finished = self.finished.get(uri)
        if finished is not None and finished.version == document.version:
            done = finished.request
            if any(start <= done.end_line and done.start_line <= end for start, end in regions):
                # A finished repair of these lines: its candidates first, best first.
                actions.extend(self._candidate_actions(finished, document))
        for (start_line, end_line), messages in regions.items():
            arguments = {
                "uri": uri,
                "startLine": start_line,
                "endLine": end_line,
                "hint": "\n".join(messages),
                "apply": True,
            }
            title = (
                "Repair with Quill"
                if start_line == end_line
                else (f"Repair lines {start_line + 1}-{end_line + 1} with Quill")
            )
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=START_KIND,
                    diagnostics=[
                        d
                        for d in params.context.diagnostics
                        if _lines_of(d.range) == (start_line, end_line)
                    ]
                    or None,
                    command=types.Command(
                        title=title, command=REPAIR_COMMAND, arguments=[arguments]
                    ),
                )
            )
        return actions or None

    def _candidate_actions(
        self, finished: FinishedRepair, document: TextDocument
    ) -> list[types.CodeAction]:
        return [
            types.CodeAction(
                title=candidate_title(rank, candidate),
                kind=CANDIDATE_KIND,
                is_preferred=rank == 1 and candidate.parses and candidate.names_resolve,
                edit=candidate_edit(document, finished, candidate),
            )
            for rank, candidate in enumerate(
                finished.result.candidates[:_MAX_CANDIDATE_ACTIONS], start=1
            )
        ]


def candidate_title(rank: int, candidate: pb.RepairCandidate) -> str:
    first = next((line.strip() for line in candidate.patch.split("\n") if line.strip()), "")
    flags = (
        ""
        if candidate.parses and candidate.names_resolve
        else (" (does not parse)" if not candidate.parses else " (unresolved names)")
    )
    more = " …" if candidate.patch.strip().count("\n") else ""
    return f"Quill fix {rank}: {first[:80]}{more}{flags}"


def candidate_edit(
    document: TextDocument, finished: FinishedRepair, candidate: pb.RepairCandidate
) -> types.WorkspaceEdit:
    """Replace the region's lines (up to the last line's end) with the patch."""
    request = finished.request
    lines = finished.text.split("\n")
    last = lines[request.end_line].rstrip("\r")
    end = types.Position(
        line=request.end_line, character=document.position_codec.client_num_units(last)
    )
    patch = candidate.patch[:-1] if candidate.patch.endswith("\n") else candidate.patch
    return types.WorkspaceEdit(
        document_changes=[
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(
                    uri=request.uri, version=finished.version
                ),
                edits=[
                    types.TextEdit(
                        range=types.Range(start=types.Position(request.start_line, 0), end=end),
                        new_text=patch,
                    )
                ],
            )
        ]
    )


def _lines_of(selection: types.Range) -> tuple[int, int]:
    """Whole lines a range covers; a range ending at column 0 does not take that line."""
    end = selection.end.line
    if end > selection.start.line and selection.end.character == 0:
        end -= 1
    return selection.start.line, end


# Zero-based line numbers, as LSP's uinteger bounds them.
_MAX_LINE = 2**31 - 1


@dataclass(kw_only=True)
class _RepairOptions:
    uri: str
    apply: bool = False
    hint: str = checked("", max_chars=1_000_000)
    budget: int | None = checked(None, low=0, high=1024)
    unguided: bool = False

    def request(self, start_line: int, end_line: int) -> RepairRequest:
        return RepairRequest(
            uri=self.uri,
            start_line=start_line,
            end_line=end_line,
            apply=self.apply,
            hint=self.hint,
            budget=self.budget,
            unguided=self.unguided,
        )


@dataclass(kw_only=True)
class RegionArguments(_RepairOptions):
    start_line: int = checked(low=0, high=_MAX_LINE)
    end_line: int | None = checked(None, low=0, high=_MAX_LINE)  # None: the start line


@dataclass(kw_only=True)
class LineArguments(_RepairOptions):
    line: int = checked(low=0, high=_MAX_LINE)


def _parse_arguments(args: tuple[Any, ...], line_command: bool) -> RepairRequest:
    """`quill.repair {uri, startLine, endLine, ...}`; `quill.repairLine {uri, line, ...}` or
    `quill.repairLine uri line`."""
    if line_command and len(args) >= 2 and isinstance(args[0], str):
        options: Any = {"uri": args[0], "line": args[1]}
    elif len(args) == 1 and isinstance(args[0], dict):
        options = args[0]
    else:
        raise JsonRpcInvalidParams("expected one object argument {uri, startLine, endLine}")
    if line_command:
        line = structure_arguments(options, LineArguments, REPAIR_LINE_COMMAND)
        return line.request(line.line, line.line)
    region = structure_arguments(options, RegionArguments, REPAIR_COMMAND)
    end = region.end_line if region.end_line is not None else region.start_line
    return region.request(region.start_line, end)


def register(server: QuillLanguageServer) -> None:
    feature = RepairFeature(server)
    server.document_listeners.append(feature.document_changed)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[START_KIND, CANDIDATE_KIND]),
    )
    def code_action(
        ls: QuillLanguageServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        return feature.code_actions(params)

    @server.command(REPAIR_COMMAND)
    async def repair(ls: QuillLanguageServer, *args: Any) -> dict[str, Any]:
        return await feature.run(_parse_arguments(args, line_command=False))

    @server.command(REPAIR_LINE_COMMAND)
    async def repair_line(ls: QuillLanguageServer, *args: Any) -> dict[str, Any]:
        return await feature.run(_parse_arguments(args, line_command=True))
