"""The suggestions serving issued recently, so reported events can be checked against them.

The registry outlives a restart of serving: the newest `PERSISTED_RECORDS` records are saved
under the data dir every `SAVE_INTERVAL_S` (when something changed) and at shutdown, and loaded
at start. Editors queue their events while serving is away and send them when it is back; the
new process must still know the suggestions those events name (docs/reliability.md,
"Restarts"). The file is ours but is read as untrusted input: a malformed record is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill.attribution import CONTEXT_KINDS, NO_CONTEXT
from quill.retention_checks import CHECK_DELAYS_S
from serving import metrics

logger = logging.getLogger(__name__)

# Editors hold at most 10,000 events each while serving is away (lsp_server/telemetry.py), and
# events come seconds to minutes after their suggestion: the newest records are what matters.
PERSISTED_RECORDS = 20_000
SAVE_INTERVAL_S = 30.0
# 2: each record names its tenant; 3: and its context label and the retention checks counted
# (older files are not loaded).
_FORMAT_VERSION = 3
_MAX_TENANT_CHARS = 256
_MODES = ("single", "multi")
_MAX_ID_CHARS = 64
_MAX_LENGTH = 10_000_000


@dataclass
class SuggestionRecord:
    tenant: str  # who was issued it: only their events count
    language: str  # already a bounded metrics label
    mode: str
    length: int
    shown: bool = False
    accepted_chars: int = 0
    rejected: bool = False
    # Kinds of context in the prompt, as a bounded label (serving/attribution.py).
    context: str = "none"
    # Retention checks (seconds after acceptance) already counted.
    retention_checks: set[int] = field(default_factory=set)


class SuggestionRegistry:
    """Bounded by count: the oldest records go first. Events arrive seconds after a suggestion,
    so the default keeps hours of suggestions at a few MB."""

    def __init__(self, capacity: int = 100_000, path: Path | None = None) -> None:
        self._capacity = capacity
        self._records: OrderedDict[str, SuggestionRecord] = OrderedDict()
        # Where the registry is saved; None: kept in memory only.
        self._path = path
        self._changed = False

    def add(self, suggestion_id: str, record: SuggestionRecord) -> None:
        self._records[suggestion_id] = record
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)
        self._changed = True

    def get(self, suggestion_id: str, tenant: str) -> SuggestionRecord | None:
        """The record if `tenant` was issued that suggestion (another tenant's is None too)."""
        record = self._records.get(suggestion_id)
        return record if record is not None and record.tenant == tenant else None

    def touch(self) -> None:
        """A record was changed in place (an event counted): the next save writes it."""
        self._changed = True

    def __len__(self) -> int:
        return len(self._records)

    # --- persistence ----------------------------------------------------------------------

    def _snapshot(self) -> list[list[Any]]:
        """The newest PERSISTED_RECORDS records, oldest first, as plain lists (on the loop:
        records change there)."""
        newest = itertools.islice(reversed(self._records.items()), PERSISTED_RECORDS)
        rows = [
            [
                sid,
                r.tenant,
                r.language,
                r.mode,
                r.length,
                r.shown,
                r.accepted_chars,
                r.rejected,
                r.context,
                sorted(r.retention_checks),
            ]
            for sid, r in newest
        ]
        rows.reverse()
        self._changed = False
        return rows

    def _write(self, rows: list[list[Any]]) -> None:
        """Write atomically (a temporary file renamed over the old one; blocking)."""
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        payload = {"version": _FORMAT_VERSION, "records": rows}
        temporary.write_text(json.dumps(payload, separators=(",", ":")), "utf-8")
        os.replace(temporary, self._path)

    def save(self) -> None:
        """Save now (blocking; at shutdown)."""
        if self._path is not None and self._changed:
            self._write(self._snapshot())

    async def save_periodically(self, interval_s: float = SAVE_INTERVAL_S) -> None:
        """Every `interval_s`, save what changed; the file is written in a thread."""
        if self._path is None:
            return
        while True:
            await asyncio.sleep(interval_s)
            if not self._changed:
                continue
            try:
                await asyncio.to_thread(self._write, self._snapshot())
            except OSError as error:
                self._changed = True
                logger.warning("suggestion registry not saved: %s", error)

    def load(self) -> None:
        """Add the records an earlier process saved (at start); a missing file is an empty one,
        an unreadable one is logged and ignored."""
        if self._path is None or not self._path.exists():
            return
        try:
            payload = json.loads(self._path.read_text("utf-8"))
            rows = payload["records"] if payload.get("version") == _FORMAT_VERSION else []
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            logger.warning("suggestion registry at %s not loaded: %s", self._path, error)
            return
        loaded = skipped = 0
        for row in rows[-self._capacity :] if isinstance(rows, list) else []:
            parsed = _parse_row(row)
            if parsed is None:
                skipped += 1
                continue
            self._records[parsed[0]] = parsed[1]
            loaded += 1
        self._changed = False
        logger.info("suggestion registry: %d records loaded, %d malformed", loaded, skipped)


def _parse_row(row: Any) -> tuple[str, SuggestionRecord] | None:
    """One saved record, checked field by field; None when anything is off."""
    with contextlib.suppress(TypeError, ValueError):
        (
            suggestion_id,
            tenant,
            language,
            mode,
            length,
            shown,
            accepted,
            rejected,
            context,
            checks,
        ) = row
        if not (
            isinstance(suggestion_id, str)
            and 0 < len(suggestion_id) <= _MAX_ID_CHARS
            and isinstance(tenant, str)
            and len(tenant) <= _MAX_TENANT_CHARS
            and isinstance(language, str)
            and mode in _MODES
            and type(length) is int
            and 0 <= length <= _MAX_LENGTH
            and type(accepted) is int
            and 0 <= accepted <= length
            and isinstance(shown, bool)
            and isinstance(rejected, bool)
            and _is_context_label(context)
            and isinstance(checks, list)
            and all(check in CHECK_DELAYS_S for check in checks)
        ):
            return None
        label = metrics.language_label(language)  # the label set stays bounded
        record = SuggestionRecord(
            tenant, label, mode, length, shown, accepted, rejected, context, set(checks)
        )
        return suggestion_id, record
    return None


def _is_context_label(value: Any) -> bool:
    """One of quill/attribution.py's labels (kinds in their order, joined by "+")."""
    if value == NO_CONTEXT:
        return True
    if not isinstance(value, str):
        return False
    kinds = value.split("+")
    return all(kind in CONTEXT_KINDS for kind in kinds) and kinds == sorted(
        set(kinds), key=CONTEXT_KINDS.index
    )
