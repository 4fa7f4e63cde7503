"""How the benchmarks' simulated people type: which keys, and the gap after each.

Shared by `quill bench typing` (through real language servers) and `quill bench load` (straight
to serving over gRPC): a steady rate within words, a short pause after some spaces and
punctuation, a longer one at the end of a line, optionally a stop to think at some line ends;
every gap varies log-normally around its kind's length, as people are not metronomes. Enter
brings the next line's indentation in the same change, as editors auto-indent.
"""

from __future__ import annotations

import argparse
import random
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Standard-library files the simulated people type (real code, on every machine).
DEFAULT_FILES = ("json/decoder.py", "textwrap.py", "shlex.py", "fractions.py", "csv.py", "glob.py")


@dataclass(frozen=True)
class TypingPace:
    cps: float = 8.0
    line_pause: float = 1.0
    word_pause: float = 0.4
    think_share: float = 0.0
    think_pause: float = 4.0
    jitter: float = 0.3

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TypingPace:
        return cls(
            args.cps, args.line_pause, args.word_pause, args.think_share, args.think_pause,
            args.jitter,
        )  # fmt: skip

    def pause_after(self, key: str, rng: random.Random) -> float:
        """Seconds between typing `key` and the next key."""
        pause = 1.0 / self.cps
        if key.startswith("\n"):
            pause += self.line_pause
            if self.think_share and rng.random() < self.think_share:
                pause += self.think_pause
        elif key in " ,(:." and rng.random() < 0.3:
            pause += self.word_pause
        return pause * (rng.lognormvariate(0.0, self.jitter) if self.jitter else 1.0)


def keystrokes(text: str) -> Iterator[str]:
    """The changes typing `text` makes, one key each; Enter brings the next line's indentation."""
    index = 0
    while index < len(text):
        key = text[index]
        if key == "\n":
            rest = text[index + 1 :]
            key += rest[: len(rest) - len(rest.lstrip(" \t"))]
        index += len(key)
        yield key


def add_typing_arguments(p: argparse.ArgumentParser, think_share: float = 0.0) -> None:
    p.add_argument("--cps", type=float, default=8.0, help="keystrokes per second within words")
    p.add_argument("--line-pause", type=float, default=1.0, help="seconds paused after a newline")
    p.add_argument("--word-pause", type=float, default=0.4, help="seconds paused after some spaces")
    p.add_argument(
        "--think-share",
        type=float,
        default=think_share,
        help="share of line ends where the person stops to think (or to read a suggestion)",
    )
    p.add_argument("--think-pause", type=float, default=4.0, help="seconds such a stop lasts")
    p.add_argument(
        "--jitter",
        type=float,
        default=0.3,
        help="spread of every gap: each is multiplied by a log-normal factor of this sigma",
    )
    p.add_argument(
        "--client-debounce-ms", type=float, default=200, help="the editor's own debounce (0: none)"
    )


def source_texts(seed: int, editors: int, context_lines: int, chars: int) -> list[tuple[str, str]]:
    """(text already in the file, text the editor will type) per editor."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rng = random.Random(seed)
    result = []
    for index in range(editors):
        lines = (stdlib / DEFAULT_FILES[index % len(DEFAULT_FILES)]).read_text().split("\n")
        start = rng.randrange(0, max(1, len(lines) - context_lines - 40))
        head = "\n".join(lines[start : start + context_lines]) + "\n"
        rest = "\n".join(lines[start + context_lines :])
        result.append((head, rest[:chars]))
    return result
