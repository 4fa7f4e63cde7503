"""Suggestion events and typed characters, batched to serving's ReportEvents.

Nothing here ever blocks a completion: events go into a bounded queue and a background task
flushes it every `flush_interval_s`. A batch that cannot be delivered stays queued for the next
try; when the queue overflows, the oldest events are dropped and counted, and the count travels
with the next batch that gets through.

Nothing a client sends can poison delivery: values are made well-typed where they come in (a
language id that is not a string, or a string protobuf cannot encode, becomes "other"), an
event that still cannot be built is dropped and counted on its own, never the batch, and the
flusher survives any failure of a send (docs/reliability.md, "Telemetry").
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from quill.v1 import quill_pb2 as pb

logger = logging.getLogger(__name__)

# Inserted text longer than this in one change is a paste or a refactoring, not typing.
MAX_TYPED_CHUNK = 64
# The language label of typed characters whose document's language id is unusable.
OTHER_LANGUAGE = "other"


def language_label(language: object) -> str:
    """A language id fit for a protobuf string: a non-string or a string with lone surrogates
    (which UTF-8 cannot encode) becomes OTHER_LANGUAGE. Serving bounds the label set itself."""
    if not isinstance(language, str) or not language:
        return OTHER_LANGUAGE
    try:
        language.encode("utf-8")
    except UnicodeEncodeError:
        return OTHER_LANGUAGE
    return language


@dataclass
class ShownSuggestion:
    suggestion_id: str
    uri: str
    text: str
    language: str
    latency_s: float = 0.0
    accepted_chars: int = 0
    resolved: bool = False
    # pb.SuggestionOrigin of the item last returned for it (fresh, type-ahead, reused, streamed).
    origin: pb.SuggestionOrigin = pb.SUGGESTION_ORIGIN_UNSPECIFIED


class Telemetry:
    def __init__(
        self,
        send: Callable[[pb.ReportEventsRequest], Awaitable[bool]],
        flush_interval_s: float = 2.0,
        max_queued: int = 10_000,
    ) -> None:
        self._send = send
        self._flush_interval_s = flush_interval_s
        self._queue: deque[pb.SuggestionEvent] = deque()
        self._max_queued = max_queued
        self._typed: Counter[str] = Counter()
        self.undelivered = 0  # dropped, not yet reported
        self.dropped_total = 0
        self.delivered_total = 0
        # Events that could not be built or sent (a bad value), dropped one by one.
        self.malformed_total = 0
        self._suggestions: dict[str, ShownSuggestion] = {}
        self._latest_by_uri: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        # Clients that send textDocument/didShowCompletion report showing themselves.
        self.client_reports_shown = False

    # --- events -------------------------------------------------------------------------

    def _enqueue(self, **fields: Any) -> None:
        event = self._build(fields)
        if event is not None:
            self.report(event)

    def report(self, event: pb.SuggestionEvent) -> None:
        """Queue an event; other parts of the server report theirs (retention checks) here."""
        suggestion = self._suggestions.get(event.suggestion_id)
        if not event.origin and suggestion is not None:
            event.origin = suggestion.origin
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self._count_dropped()
        self._queue.append(event)
        self._ensure_flusher()

    def _build(self, fields: dict[str, Any]) -> pb.SuggestionEvent | None:
        """The event, or None (dropped and counted) when a value cannot go into one."""
        try:
            event = pb.SuggestionEvent(**fields)
            event.SerializeToString()
        except Exception:  # noqa: BLE001 - any bad value costs this event only
            logger.debug("malformed event dropped: %r", fields, exc_info=True)
            self.malformed_total += 1
            self._count_dropped()
            return None
        return event

    def _count_dropped(self) -> None:
        self.undelivered += 1
        self.dropped_total += 1

    def returned(
        self,
        suggestion_id: str,
        uri: str,
        text: str,
        language: str,
        latency_s: float,
        origin: pb.SuggestionOrigin = pb.SUGGESTION_ORIGIN_UNSPECIFIED,
    ) -> None:
        """A suggestion went back to the editor; an earlier unaccepted one there is superseded.

        The same suggestion again (its rest after type-ahead, more of a streamed block) is not
        shown anew: only how its latest item was produced changes."""
        known = self._suggestions.get(suggestion_id)
        if known is not None:
            known.origin = origin or known.origin
            self._latest_by_uri[uri] = suggestion_id
            return
        previous = self._latest_by_uri.get(uri)
        if previous is not None and previous in self._suggestions:
            self._resolve_rejected(self._suggestions[previous])
        self._suggestions[suggestion_id] = ShownSuggestion(
            suggestion_id, uri, text, language_label(language), latency_s, origin=origin
        )
        self._latest_by_uri[uri] = suggestion_id
        if len(self._suggestions) > 1000:  # forget the oldest
            self._suggestions.pop(next(iter(self._suggestions)))
        if not self.client_reports_shown:
            self._shown(suggestion_id, latency_s)

    def _shown(self, suggestion_id: str, latency_s: float = 0.0) -> None:
        self._enqueue(
            suggestion_id=suggestion_id,
            kind=pb.SUGGESTION_EVENT_KIND_SHOWN,
            client_latency_ms=latency_s * 1e3,
        )

    def extended(self, suggestion_id: str, text: str) -> None:
        """More of a suggestion went to the editor (the block after its early first line)."""
        suggestion = self._suggestions.get(suggestion_id)
        if suggestion is not None and len(text) > len(suggestion.text):
            suggestion.text = text

    def client_shown(self, suggestion_id: str) -> None:
        if not self.client_reports_shown:
            # From now on only the client's notifications count as shown; this suggestion was
            # already counted when it was returned.
            self.client_reports_shown = True
            return
        suggestion = self._suggestions.get(suggestion_id)
        if suggestion is not None:
            self._shown(suggestion_id, suggestion.latency_s)

    def accepted(self, suggestion_id: str, inserted: int | None = None) -> ShownSuggestion | None:
        """The user accepted the suggestion; `inserted` characters of it went in by the accept
        (fewer than its length when the user had typed its beginning)."""
        suggestion = self._suggestions.get(suggestion_id)
        if suggestion is None or suggestion.resolved:
            return None
        suggestion.resolved = True
        length = len(suggestion.text)
        chars = length if inserted is None else max(0, min(inserted, length))
        suggestion.accepted_chars = chars
        self._enqueue(
            suggestion_id=suggestion_id, kind=pb.SUGGESTION_EVENT_KIND_ACCEPTED, chars=chars
        )
        return suggestion

    def partially_accepted(self, suggestion_id: str, accepted_length: int) -> None:
        suggestion = self._suggestions.get(suggestion_id)
        if (
            suggestion is None
            or suggestion.resolved
            or accepted_length <= suggestion.accepted_chars
        ):
            return
        suggestion.accepted_chars = min(accepted_length, len(suggestion.text))
        self._enqueue(
            suggestion_id=suggestion_id,
            kind=pb.SUGGESTION_EVENT_KIND_PARTIALLY_ACCEPTED,
            chars=suggestion.accepted_chars,
        )

    def document_closed(self, uri: str) -> None:
        """The document closed: its suggestion on screen goes with it (rejected unless it was
        accepted), and nothing is kept for the uri."""
        latest = self._latest_by_uri.pop(uri, None)
        if latest is not None and latest in self._suggestions:
            self._resolve_rejected(self._suggestions[latest])

    @property
    def documents_tracked(self) -> int:
        return len(self._latest_by_uri)

    def _resolve_rejected(self, suggestion: ShownSuggestion) -> None:
        if suggestion.resolved or suggestion.accepted_chars:
            return
        suggestion.resolved = True
        self._enqueue(
            suggestion_id=suggestion.suggestion_id, kind=pb.SUGGESTION_EVENT_KIND_REJECTED
        )

    # --- typed characters ---------------------------------------------------------------

    def text_inserted(self, uri: str, text: str, language: str) -> None:
        """Count characters the user typed; text that a suggestion put there is not typing."""
        if not isinstance(text, str) or not text or len(text) > MAX_TYPED_CHUNK:
            return
        latest = self._suggestions.get(self._latest_by_uri.get(uri, ""))
        if latest is not None and latest.text and text in latest.text and len(text) > 1:
            return  # the editor inserting (part of) the shown suggestion
        self._typed[language_label(language)] += len(text)
        self._ensure_flusher()

    # --- delivery -----------------------------------------------------------------------

    def _ensure_flusher(self) -> None:
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._flush_later())
            except RuntimeError:  # no loop (unit tests of the bookkeeping)
                self._task = None

    async def _flush_later(self) -> None:
        # Until delivered: a batch serving did not take is tried again here (this task is the
        # flusher, so flush() cannot start another one).
        await asyncio.sleep(self._flush_interval_s)
        while not await self.flush():
            await asyncio.sleep(self._flush_interval_s)

    async def flush(self) -> bool:
        """Send everything queued as one batch; False keeps it all for the next try. Never
        raises: a failed send is a batch not taken."""
        if not self._queue and not self._typed and not self.undelivered:
            return True
        events = list(self._queue)
        typed = self._typed_counts()
        request = pb.ReportEventsRequest(
            events=events, typed_chars=typed, undelivered_events=self.undelivered
        )
        try:
            delivered = await self._send(request)
        except Exception as error:  # noqa: BLE001 - the flusher must outlive any failure
            logger.warning("events not delivered: %s", type(error).__name__)
            logger.debug("send failed", exc_info=True)
            delivered = False
        if not delivered:
            self._ensure_flusher()  # keep everything queued and try again later
            return False
        for _ in events:
            self._queue.popleft()
        self._typed.subtract(typed)
        self._typed = +self._typed
        self.undelivered = 0
        self.delivered_total += len(events)
        return True

    def _typed_counts(self) -> dict[str, int]:
        """The typed-character counts a request can carry (labels are checked where they come
        in; a count protobuf cannot hold is dropped here rather than the batch)."""
        counts: dict[str, int] = {}
        for language, chars in list(self._typed.items()):
            try:
                pb.ReportEventsRequest(typed_chars={language: chars})
            except Exception:  # noqa: BLE001
                logger.debug("typed count dropped: %r=%r", language, chars)
                del self._typed[language]
                self.malformed_total += 1
                continue
            counts[language] = chars
        return counts

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            await asyncio.wait_for(self.flush(), 2.0)
        except (TimeoutError, asyncio.CancelledError):
            logger.info("%d events not delivered at shutdown", len(self._queue))
