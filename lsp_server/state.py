"""What the language server knows between requests, as typed dataclasses.

Per document: the serving call in flight, the newest request's number and the timing of the
last keystroke; freed when the document closes. Per session: what the timing policy learns,
type-ahead, the counters `quill.stats` reports and the log of serving calls. The server owns one
`SessionState`; features read and change it, and nothing else keeps state of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from lsp_server.completion.inflight import CompletionRecord, InFlight
from lsp_server.completion.snippets import RecentEdits, WindowCache
from lsp_server.completion.timing import AnswerTimes, Clock, PauseHistory
from lsp_server.completion.typeahead import TokenUsage, TypeAheadCache
from lsp_server.retention import RetentionTracker


@dataclass
class DocumentState:
    """One open document's completion state."""

    # The serving call in flight, so a newer request can reuse or supersede it.
    inflight: InFlight | None = None
    # Number of the newest inline completion request: an older one still waiting answers with
    # nothing.
    latest_request: int = 0
    # When the last keystroke reached the document (time.monotonic()), and which automatic
    # request's pause is open: (kind of place, since when).
    keystroke_at: float | None = None
    open_pause: tuple[str, float] | None = None


@dataclass
class Counters:
    """This session's counts, for `quill.stats` and the typing benchmark."""

    shown: int = 0
    accepted: int = 0
    accepted_chars: int = 0
    # Requests answered from a generation already in flight.
    reused: int = 0
    # Calls cancelled because a newer request or a keystroke made them stale; of those, the
    # ones cancelled at a keystroke (didChange), before the next request.
    superseded: int = 0
    cancelled_on_change: int = 0
    # Automatic requests that waited for a longer pause (adaptive timing).
    held_back: int = 0
    # Streamed blocks answered with their first line while the rest was still generating.
    early_first_lines: int = 0
    refreshes_sent: int = 0


@dataclass
class SessionState:
    documents: dict[str, DocumentState] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    typeahead: TypeAheadCache = field(default_factory=TypeAheadCache)
    # Engine tokens behind suggestions the editor was shown (the honest "not wasted").
    token_usage: TokenUsage = field(default_factory=TokenUsage)
    # What the timing policy learns: the user's pauses and serving's answer times.
    pauses: PauseHistory = field(default_factory=PauseHistory)
    answer_times: AnswerTimes = field(default_factory=AnswerTimes)
    # The time those are measured in, and waited on (tests drive a clock of their own).
    clock: Clock = field(default_factory=Clock)
    # The last serving calls, and (seconds to the early first line, seconds to the whole block)
    # of streamed blocks.
    completion_log: deque[CompletionRecord] = field(default_factory=lambda: deque(maxlen=2000))
    streamed_blocks: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=1000))
    # Whether the client takes quill/inlineCompletionRefresh.
    inline_completion_refresh: bool = False
    # Context from the editor (lsp_server/completion/snippets.py): the regions edited last, and
    # the open documents' windows.
    recent_edits: RecentEdits = field(default_factory=RecentEdits)
    windows: WindowCache = field(default_factory=WindowCache)
    # Accepted suggestions followed for the retention checks (lsp_server/retention.py).
    retention: RetentionTracker = field(default_factory=RetentionTracker)
    # Set once the first workspace sync has finished (or given up), so a search waits for it.
    workspace_synced: asyncio.Event = field(default_factory=asyncio.Event)

    def document(self, uri: str) -> DocumentState:
        state = self.documents.get(uri)
        if state is None:
            state = self.documents[uri] = DocumentState()
        return state

    def forget_document(self, uri: str) -> None:
        """The document closed: drop everything kept for it, and cancel its call in flight."""
        state = self.documents.pop(uri, None)
        if state is not None and state.inflight is not None and not state.inflight.call.done():
            state.inflight.call.cancel()
        self.typeahead.forget(uri)
        self.recent_edits.closed(uri)
        self.windows.forget(uri)
