"""One simulated editor talking to serving over gRPC the way Quill's language server does, for
`quill bench load` (thousands of these cost far less than as many language servers).

It types real code (quill_cli/bench/typist.py); when a pause outlasts the editor's debounce it
asks for a completion (multi-line on a fresh line after a line that opens a block, as the
language server's rule does; single-line elsewhere), and the next keystroke cancels a call still
in flight. A suggestion that arrives is shown; some are accepted, the rest rejected when the next
one comes; the events go to serving in a batch every 2 s (kept and sent again when a batch is
not taken). The workspace (the file being typed) is synced by content hash at the start and
again after each pause of 2 s or more, as the language server syncs an edited document. Every
call goes with the workspace's routing header, so a load balancer keeps it on one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from quill.digest import content_digest
from quill.grpc_metadata import routing_metadata
from quill.v1 import quill_pb2 as pb
from quill.v1 import quill_pb2_grpc
from quill_cli.bench.typist import TypingPace, keystrokes

# The language server sends an edited document after this long without edits.
DOCUMENT_SYNC_PAUSE_S = 2.0
EVENT_FLUSH_S = 2.0
# What the language server sends of the text before the cursor (its maxPrefixChars default).
MAX_PREFIX_CHARS = 16_000


@dataclass
class Call:
    """One Complete call and how it ended."""

    multi_line: bool
    keystroke_at: float
    sent_at: float
    # "ok", "cancelled" (by the next keystroke), "stopped" (in flight when the run ended) or
    # the gRPC status code of a failure.
    outcome: str = "cancelled"
    done_at: float = 0.0
    tokens: int = 0
    timings: pb.StageTimings | None = None
    instance: str = ""


@dataclass
class EditorTally:
    calls: list[Call] = field(default_factory=list)
    # Events each serving process acknowledged (by its serving_instance), and those refused.
    events_recorded: Counter[str] = field(default_factory=Counter)
    events_rejected: int = 0
    events_sent: int = 0
    report_failures: int = 0
    syncs: int = 0
    sync_failures: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class EditorSettings:
    pace: TypingPace = TypingPace()
    debounce_s: float = 0.2
    accept_share: float = 0.3
    deadline_s: float = 10.0
    language: str = "python"
    # Sync the workspace (serving indexes it for retrieval) and let prompts use it.
    retrieval: bool = True


class GrpcEditor:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        workspace_id: str,
        path: str,
        head: str,
        typed: str,
        settings: EditorSettings,
        seed: int,
    ) -> None:
        self._stub = quill_pb2_grpc.QuillStub(channel)
        self.workspace_id = workspace_id
        self._metadata = routing_metadata(workspace_id)
        self._path = path
        self._head = head
        self._typed = typed
        self._settings = settings
        self._rng = random.Random(seed)
        self._text = head
        self._inflight: asyncio.Task[None] | None = None
        self._inflight_call: Call | None = None
        self._events: list[pb.SuggestionEvent] = []
        self._last_shown: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        # Typing time not slept yet: keys in a burst change nothing serving sees until the
        # next pause, so the editor sleeps once per pause, not once per key (cheap in numbers).
        self._owed_s = 0.0
        self.tally = EditorTally()

    async def run(self, stop: asyncio.Event) -> None:
        """Type until `stop` is set; then deliver what is left to report."""
        if self._settings.retrieval:
            await self._sync(manifest=True)
        flusher = asyncio.create_task(self._flush_every(stop))
        try:
            for key in self._keys():
                if stop.is_set():
                    break
                await self._keystroke(key, stop)
        finally:
            if self._inflight is not None and not self._inflight.done():
                assert self._inflight_call is not None
                self._inflight_call.outcome = "stopped"
            self._cancel_inflight()
            flusher.cancel()
            for task in list(self._background):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self._flush()

    def _keys(self) -> Iterator[str]:
        """The typed text's keys, over and over in a fresh copy of the file (a long run)."""
        for _ in itertools.count():
            self._text = self._head
            yield from keystrokes(self._typed)

    async def _keystroke(self, key: str, stop: asyncio.Event) -> None:
        self._cancel_inflight()
        line_before = self._text.rsplit("\n", 1)[-1]
        self._text += key
        pause = self._settings.pace.pause_after(key, self._rng)
        debounce = self._settings.debounce_s
        if pause <= debounce:
            self._owed_s += pause  # the next key comes before the editor would ask
            return
        await asyncio.sleep(self._owed_s)
        self._owed_s = 0.0
        keystroke_at = time.perf_counter()
        await asyncio.sleep(debounce)
        if stop.is_set():
            return
        multi = key.startswith("\n") and line_before.rstrip().endswith(":")
        self._inflight_call = Call(multi, keystroke_at, time.perf_counter())
        self._inflight = asyncio.create_task(self._complete(self._inflight_call))
        if pause - debounce >= DOCUMENT_SYNC_PAUSE_S and self._settings.retrieval:
            self._spawn(self._sync(manifest=False))
        await asyncio.sleep(pause - debounce)

    def _cancel_inflight(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
        self._inflight = None

    def _spawn(self, work: object) -> None:
        task = asyncio.ensure_future(work)  # type: ignore[call-overload]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- Complete ----

    async def _complete(self, call: Call) -> None:
        multi = call.multi_line
        text = self._text
        lines = text.split("\n")
        request = pb.CompleteRequest(
            workspace_id=self.workspace_id,
            file_path=self._path,
            language=self._settings.language,
            prefix=text[-MAX_PREFIX_CHARS:],
            cursor=pb.Position(line=len(lines) - 1, character=len(lines[-1])),
            mode=pb.COMPLETION_MODE_MULTI_LINE if multi else pb.COMPLETION_MODE_SINGLE_LINE,
            context=pb.ContextOptions(disable_retrieval=not self._settings.retrieval),
        )
        self.tally.calls.append(call)
        rpc = self._stub.Complete(
            request, timeout=self._settings.deadline_s, metadata=self._metadata
        )
        try:
            async for response in rpc:
                if response.HasField("done"):
                    call.done_at = time.perf_counter()
                    call.outcome = "ok"
                    done = response.done
                    call.tokens, call.timings = done.completion_tokens, done.timings
                    call.instance = done.serving_instance
                    self._shown(done)
        except asyncio.CancelledError:
            rpc.cancel()  # the next keystroke: cancelling the RPC aborts the engine request
        except grpc.aio.AioRpcError as error:
            call.outcome = error.code().name

    def _shown(self, done: pb.CompletionDone) -> None:
        if not done.text:
            return
        if self._last_shown is not None:
            self._event(self._last_shown, pb.SUGGESTION_EVENT_KIND_REJECTED)
        self._event(done.suggestion_id, pb.SUGGESTION_EVENT_KIND_SHOWN)
        self._last_shown = done.suggestion_id
        if self._rng.random() < self._settings.accept_share:
            self._event(done.suggestion_id, pb.SUGGESTION_EVENT_KIND_ACCEPTED, len(done.text))
            self._last_shown = None

    # ---- ReportEvents ----

    def _event(self, suggestion_id: str, kind: int, chars: int = 0) -> None:
        self._events.append(pb.SuggestionEvent(suggestion_id=suggestion_id, kind=kind, chars=chars))  # type: ignore[arg-type]

    async def _flush_every(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(EVENT_FLUSH_S)
            await self._flush()

    async def _flush(self) -> None:
        if not self._events:
            return
        batch, self._events = self._events, []
        try:
            answer = await self._stub.ReportEvents(
                pb.ReportEventsRequest(events=batch), timeout=5.0, metadata=self._metadata
            )
        except grpc.aio.AioRpcError:
            self._events = batch + self._events  # kept for the next batch, as telemetry does
            self.tally.report_failures += 1
            return
        self.tally.events_sent += len(batch)
        self.tally.events_recorded[answer.serving_instance] += answer.recorded
        self.tally.events_rejected += answer.rejected

    # ---- SyncWorkspace ----

    async def _sync(self, manifest: bool) -> None:
        text = self._text
        file = pb.WorkspaceFile(path=self._path, sha256=content_digest(text), content=text)
        try:
            if manifest:
                answer = await self._stub.SyncWorkspace(
                    pb.SyncWorkspaceRequest(
                        workspace_id=self.workspace_id,
                        manifest=[pb.FileDigest(path=file.path, sha256=file.sha256)],
                        manifest_complete=True,
                    ),
                    timeout=30.0,
                    metadata=self._metadata,
                )
                if not answer.needed_paths:
                    return
            await self._stub.SyncWorkspace(
                pb.SyncWorkspaceRequest(workspace_id=self.workspace_id, files=[file]),
                timeout=30.0,
                metadata=self._metadata,
            )
            self.tally.syncs += 1
        except grpc.aio.AioRpcError as error:
            self.tally.sync_failures[error.code().name] += 1
