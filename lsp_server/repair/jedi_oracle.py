"""Jedi as the completion engine for Python repair: what can be typed here, what does not resolve.

Jedi runs on the buffer text with the patch so far, in the workspace's Python environment (so
third-party attributes are known), on one worker thread per engine: Jedi keeps global inference
and parser caches that are not safe to share between threads, so calls are serialised there and
each caller waits at most its deadline. A call that overruns returns None (the decoder then
accepts the token); the thread finishes it in the background and the engine stays usable.

Where Jedi cannot judge, the engine says "anything goes" ([""]) instead of "nothing" ([]), so the
decoder never prunes valid code: inside strings and comments, number literals, names being
defined (after def/class/as/for/lambda/global, parameters), attributes of objects whose type Jedi
cannot infer, and a statement's first name when it matches nothing known (a new variable).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import keyword
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jedi

from lsp_server.repair.calls import Param, calls_in, mismatch

logger = logging.getLogger(__name__)

T = TypeVar("T")

# "Anything can be typed here": a non-empty answer without a common prefix to complete.
ANYTHING = [""]

_NAMES_ALWAYS_KNOWN = (
    frozenset(dir(builtins))
    | frozenset(keyword.kwlist)
    | frozenset(keyword.softkwlist)
    | {"__file__", "__name__", "__doc__", "__spec__", "__package__", "__builtins__"}
)

_FRAGMENT = re.compile(r"\w*$")
_KEYWORDS = sorted(set(keyword.kwlist) | set(keyword.softkwlist))
# Before the first names of a statement: nothing, `;`, or earlier targets (`a, b, `).
_STATEMENT_TARGETS = re.compile(r"^(?:.*;)?\s*(?:[^\W\d]\w*\s*,\s*)*$")
_BRACKETS = {")": "(", "]": "[", "}": "{"}
# Text before an identifier that makes the identifier a new name (nothing to complete against).
_DEFINES_NAME = re.compile(
    r"""(?x)
    (?:^|[^\w.])(?:def|class|as)\s+$                          # def f / class C / ... as name
    | ^\s*(?:global|nonlocal)\s+(?:\w+\s*,\s*)*$               # global a, b
    | ^\s*(?:async\s+)?def\s+\w+\s*\((?:[^()]|\([^()]*\))*[(,]\s*\**$   # a parameter
    | \blambda\b[^:]*$                                         # lambda parameters
    """
)
_LAST_FOR = re.compile(r"\bfor\b(?!.*\bfor\b)(.*)$")
_NUMBER_BEFORE_DOT = re.compile(r"(?<![\w.])\d[\d_]*\.$")
# `\\(?:.|\Z)`: an escape, or a backslash that ends the text (still inside the string).
_STRING_BODY = {
    "'": re.compile(r"(?:[^'\\\n]|\\(?:.|\n|\Z))*"),
    '"': re.compile(r'(?:[^"\\\n]|\\(?:.|\n|\Z))*'),
    "'''": re.compile(r"(?:[^'\\]|\\(?:.|\Z)|'(?!''))*", re.S),
    '"""': re.compile(r'(?:[^"\\]|\\(?:.|\Z)|"(?!""))*', re.S),
}
_CODE_SPECIAL = re.compile(r"""[#'"]""")


def lexical_state(text: str) -> str:
    """Whether the end of `text` is in "code", a "string" or a "comment"."""
    position = 0
    while True:
        special = _CODE_SPECIAL.search(text, position)
        if special is None:
            return "code"
        if special.group() == "#":
            newline = text.find("\n", special.end())
            if newline < 0:
                return "comment"
            position = newline + 1
            continue
        quote = special.group()
        if text.startswith(quote * 3, special.start()):
            quote *= 3
        body_start = special.start() + len(quote)
        body = _STRING_BODY[quote].match(text, body_start)
        end = body.end() if body is not None else body_start
        if end >= len(text):
            return "string"
        # An unterminated one-line string ends at the newline (a syntax error Jedi recovers).
        position = end + len(quote) if text.startswith(quote, end) else end + 1


def _in_comprehension_head(before: str) -> bool:
    """Inside a list/set/dict display or parentheses (not a call's) with no `for` yet:
    `[x for x in xs]` uses `x` before binding it. Call arguments stay guided, so a generator
    expression as an argument (`sum(x for x in xs)`) is still checked name by name."""
    stack: list[int] = []
    quote = ""
    for index, char in enumerate(before):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            stack.append(index)
        elif char in _BRACKETS and stack:
            stack.pop()
    if not stack:
        return False
    opener = stack[-1]
    if before[opener] == "(" and re.search(r"[\w)\]]\s*$", before[:opener]):
        return False  # a call's arguments
    return re.search(r"\bfor\b", before[opener:]) is None


_BINDERS = re.compile(r"\bfor\s+([\w\s,()]+?)\s+in\b|\blambda\b([^:]*):")


def _bound_earlier(before: str) -> list[str]:
    """Names bound by `for` clauses and `lambda` parameters in `before` (one line)."""
    names: list[str] = []
    for match in _BINDERS.finditer(before):
        targets = match.group(1) if match.group(1) is not None else match.group(2)
        names += re.findall(r"[^\W\d]\w*", targets.replace("*", " "))
    return names


def _defines_name(before: str) -> bool:
    if _DEFINES_NAME.search(before):
        return True
    last_for = _LAST_FOR.search(before)
    # `for x, y` and comprehension targets: names until the `in`.
    return last_for is not None and re.search(r"\bin\b", last_for.group(1)) is None


def default_python(project_root: Path | None) -> str | None:
    """The workspace's virtual environment if it has one, else None (Jedi's default)."""
    if project_root is None:
        return None
    for venv in (".venv", "venv"):
        for relative in ("bin/python", "Scripts/python.exe"):
            candidate = project_root / venv / relative
            if candidate.is_file():
                return str(candidate)
    return None


class JediWorker:
    """The Jedi project (environment) and the one thread Jedi runs on; shared per workspace."""

    def __init__(self, python: str | None, project_root: Path | None) -> None:
        if python is not None and not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ValueError(f"Python interpreter {python!r} does not exist or is not executable")
        self.python = python
        self.project_root = project_root
        self._project: jedi.Project | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="jedi"
        )
        self.timeouts = 0
        self._warm: concurrent.futures.Future[None] | None = None

    def project(self) -> jedi.Project:
        # Built on the worker thread on first use: finding the environment may start a process.
        if self._project is None:
            root = self.project_root or Path.cwd()
            if self.python is not None:
                self._project = jedi.Project(root, environment_path=self.python)
            else:
                self._project = jedi.Project(root)
        return self._project

    def warm_up(self) -> None:
        """Start Jedi's first-use work (environment, builtins and stdlib stubs: seconds on a busy
        CPU) on the worker thread now, so the first query of a repair does not miss its deadline.
        """
        if self._warm is None:
            self._warm = self._executor.submit(self._warm_up)

    async def ready(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until the warm-up is done; False if it is not yet."""
        self.warm_up()
        assert self._warm is not None
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._warm)), timeout_s)
        except TimeoutError:
            return False
        return True

    def _warm_up(self) -> None:
        try:
            jedi.Script(code="import os\nos.path.", project=self.project()).complete(2, 8)
        except Exception as error:  # noqa: BLE001 - a failing environment shows on first query
            logger.warning("jedi warm-up failed: %s: %s", type(error).__name__, error)

    async def run(self, work: Callable[[], T], deadline_s: float) -> T | None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, work)
        try:
            return await asyncio.wait_for(future, timeout=max(deadline_s, 0.0))
        except TimeoutError:
            self.timeouts += 1
            logger.debug("jedi did not answer within %.3f s", deadline_s)
            return None
        except Exception as error:  # noqa: BLE001 - a crashing engine must not end the repair
            logger.warning("jedi failed: %s: %s", type(error).__name__, error)
            return None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class JediOracle:
    """`NameOracle` for Python files, backed by Jedi."""

    def __init__(
        self,
        python: str | None = None,
        project_root: str | Path | None = None,
        path: str | Path | None = None,
        worker: JediWorker | None = None,
    ) -> None:
        root = Path(project_root) if project_root is not None else None
        self._worker = worker or JediWorker(python or default_python(root), root)
        # The file the text belongs to: relative imports and the package are resolved from it.
        self.path = Path(path) if path is not None else None

    @property
    def worker(self) -> JediWorker:
        return self._worker

    def for_path(self, path: str | Path | None) -> JediOracle:
        """The same environment and thread, answering for another file."""
        return JediOracle(path=path, worker=self._worker)

    def close(self) -> None:
        self._worker.close()

    async def prepare(self, timeout_s: float) -> bool:
        """Warm Jedi up before a repair: serving gives up guidance after a few late answers, and
        Jedi's cold first query takes seconds."""
        return await self._worker.ready(timeout_s)

    async def continuations(
        self, text: str, line: int, column: int, deadline_s: float
    ) -> list[str] | None:
        return await self._worker.run(lambda: self._continuations(text, line, column), deadline_s)

    async def unresolved_names(
        self, text: str, start_line: int, end_line: int, deadline_s: float
    ) -> list[str] | None:
        return await self._worker.run(
            lambda: self._unresolved_names(text, start_line, end_line), deadline_s
        )

    async def call_problems(
        self, text: str, start_line: int, patch: str, deadline_s: float
    ) -> list[str] | None:
        return await self._worker.run(
            lambda: self._call_problems(text, start_line, patch), deadline_s
        )

    def _script(self, text: str) -> jedi.Script:
        return jedi.Script(code=text, path=self.path, project=self._worker.project())

    def _continuations(self, text: str, line: int, column: int) -> list[str]:
        lines = text.split("\n")
        if not 0 <= line < len(lines) or not 0 <= column <= len(lines[line].rstrip("\r")):
            raise ValueError(f"position {line}:{column} is outside the text")
        offset = sum(len(each) + 1 for each in lines[:line]) + column
        if lexical_state(text[:offset]) != "code":
            return ANYTHING
        line_before = lines[line][:column]
        fragment_match = _FRAGMENT.search(line_before)
        assert fragment_match is not None  # \w*$ always matches
        fragment = fragment_match.group()
        before = line_before[: fragment_match.start()]
        if fragment[:1].isdigit() or _NUMBER_BEFORE_DOT.search(before):
            return ANYTHING  # a number literal
        if _defines_name(before):
            return ANYTHING
        script = self._script(text)
        found = _matching(script.complete(line + 1, column), fragment)
        if before.endswith("."):
            if not found and not script.complete(line + 1, len(before)):
                return ANYTHING  # Jedi knows no attribute at all: the object's type is unknown
            return found
        # Jedi leaves out keywords in some places (`key=lambda` in an argument list), and the
        # names a `for` clause or a `lambda` earlier on the line binds while its brackets are
        # still open (`[x for x in xs if x`, `key=lambda x: m[x`).
        found += [
            word[len(fragment) :]
            for word in (*_KEYWORDS, *_bound_earlier(before))
            if word.startswith(fragment) and word[len(fragment) :] not in found
        ]
        if _STATEMENT_TARGETS.match(before):
            # A statement's first names may be new variables (`total = ...`, `a, b = ...`).
            # Known names (Jedi's and those used further down the file) still guide them; a
            # name matching none is accepted.
            rest = text[offset:]
            later = {
                name[len(fragment) :]
                for name in re.findall(r"(?<![\w.])[^\W\d]\w*", rest)
                if name.startswith(fragment)
            }
            found = sorted(set(found) | later)
            return found or ANYTHING
        if not found and _in_comprehension_head(before):
            return ANYTHING  # maybe the variable of a `for` clause that comes later
        return found

    def _unresolved_names(self, text: str, start_line: int, end_line: int) -> list[str]:
        script = self._script(text)
        lines = text.split("\n")
        names = script.get_names(all_scopes=True, definitions=True, references=True)
        defined = {name.name for name in names if name.is_definition()}
        unresolved: list[str] = []
        for name in names:
            if not start_line + 1 <= name.line <= end_line + 1 or name.is_definition():
                continue
            if name.name in _NAMES_ALWAYS_KNOWN or name.name in defined:
                continue
            source_line = lines[name.line - 1]
            after = source_line[name.column + len(name.name) :]
            if re.match(r"\s*=(?!=)", after):
                continue  # a keyword argument; a callee taking **kwargs accepts any name
            if _resolves(name):
                continue
            is_attribute = source_line[: name.column].rstrip().endswith(".")
            if is_attribute and not script.complete(name.line, name.column):
                continue  # the object's type is unknown: no judgement
            if name.name not in unresolved:
                unresolved.append(name.name)
        return unresolved

    def _call_problems(self, text: str, start_line: int, patch: str) -> list[str]:
        calls = calls_in(patch)
        if not calls:
            return []
        script = self._script(text)
        problems: list[str] = []
        for call in calls:
            signatures = script.get_signatures(start_line + call.line + 1, call.column)
            problem = mismatch(call, [_params(signature) for signature in signatures])
            if problem is not None and problem not in problems:
                problems.append(problem)
        return problems


def _params(signature: Any) -> list[Param]:
    return [
        Param(param.name, param.kind.name, "=" in param.to_string()) for param in signature.params
    ]


def _matching(completions: list[Any], fragment: str) -> list[str]:
    """The rest of each completion that continues `fragment` exactly (Jedi matches any case)."""
    rests: list[str] = []
    for completion in completions:
        name = completion.name
        if name.endswith("=") and completion.type == "param":
            name = name[:-1]  # a keyword argument `key=`: the identifier is `key`
        if name.startswith(fragment):
            rest = name[len(fragment) :]
            if rest not in rests:
                rests.append(rest)
    return rests


def _resolves(name: Any) -> bool:
    try:
        return bool(name.goto()) or bool(name.infer())
    except Exception:  # noqa: BLE001 - Jedi's inference fails on odd code; no judgement then
        return True
