"""The small interface the repair client asks a name oracle (Repilot's "completion engine") through.

An engine answers questions about a file with a candidate patch already placed in it: what can be
typed here, which names do not resolve, which calls do not fit their signatures. Jedi answers them
for Python (`jedi_oracle.py`); an LSP client to another language's server (pyright,
rust-analyzer, jdtls) can implement the same methods.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class NameOracle(Protocol):
    async def continuations(
        self, text: str, line: int, column: int, deadline_s: float
    ) -> list[str] | None:
        """The remaining characters of every identifier that can be typed at (line, column).

        `line` is zero-based, `column` counts characters. For the identifier being typed there
        (maybe an empty prefix), each entry is what completes it to a known name; "" means the
        identifier is already a complete known name. An empty list means nothing known can be
        typed here (the token is infeasible). None means the engine could not answer within
        `deadline_s` seconds (or failed); the caller then accepts the token.
        """
        ...

    async def unresolved_names(
        self, text: str, start_line: int, end_line: int, deadline_s: float
    ) -> list[str] | None:
        """Names used on lines start_line..end_line (zero-based, inclusive) that do not resolve.

        A name resolves when the engine finds where it comes from, when it is a builtin or a
        keyword, or when it is defined somewhere in the file. None: could not answer in time.
        """
        ...

    async def call_problems(
        self, text: str, start_line: int, patch: str, deadline_s: float
    ) -> list[str] | None:
        """Why calls closed in `patch` (placed in `text` from zero-based `start_line` on) do not
        fit their callee's signature: too many or too few arguments, unknown keyword names.
        [] when every call fits or cannot be judged; None: could not answer in time."""
        ...
