"""Calls in a patch, and whether their arguments fit a callee's signature (arity, keyword names).

Pure logic, independent of the engine: `calls_in` finds the calls a patch closes (tokenize, so
strings and comments do not confuse it), `mismatch` compares one call's arguments with the
parameters of each signature the engine knows for the callee. A call with `*args` or `**kwargs`
arguments is not judged, and a call matching any one signature (overloads) is fine, so a doubt
never rejects code.
"""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ParamKind = Literal[
    "POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD"
]


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    has_default: bool


@dataclass(frozen=True)
class Call:
    callee: str
    # Zero-based line within the patch and column just after the `(`.
    line: int
    column: int
    arguments: str
    # Offset in the patch just after the call's `)`.
    end: int


def calls_in(patch: str) -> list[Call]:
    """Every call whose `)` is in `patch` (which may stop mid-way)."""
    tokens: list[tokenize.TokenInfo] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(patch).readline):
            tokens.append(token)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # the patch so far ends inside a bracket or a string: its closed calls still count
    lines = patch.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    calls: list[Call] = []
    opened: list[tuple[int, tokenize.TokenInfo | None]] = []  # (index, callee token or None)
    for index, token in enumerate(tokens):
        if token.type != tokenize.OP:
            continue
        if token.string in "([{":
            previous = tokens[index - 1] if index else None
            is_call = (
                token.string == "("
                and previous is not None
                and (
                    (previous.type == tokenize.NAME and not keyword.iskeyword(previous.string))
                    or previous.string in (")", "]")
                )
            )
            opened.append((index, previous if is_call else None))
        elif token.string in ")]}" and opened:
            start_index, callee = opened.pop()
            if callee is None or token.string != ")":
                continue
            paren = tokens[start_index]
            begin = offsets[paren.end[0] - 1] + paren.end[1]
            end = offsets[token.start[0] - 1] + token.start[1]
            calls.append(
                Call(callee.string, paren.end[0] - 1, paren.end[1], patch[begin:end], end + 1)
            )
    return calls


def mismatch(call: Call, signatures: Sequence[Sequence[Param]]) -> str | None:
    """Why the call fits none of the signatures, or None (it fits one, or it cannot be judged)."""
    if not signatures:
        return None
    try:
        parsed = ast.parse(f"_({call.arguments})", mode="eval").body
    except SyntaxError:
        return None
    assert isinstance(parsed, ast.Call)
    if any(isinstance(a, ast.Starred) for a in parsed.args) or any(
        k.arg is None for k in parsed.keywords
    ):
        return None
    keywords = [k.arg for k in parsed.keywords if k.arg is not None]
    reasons = [_reason(call.callee, len(parsed.args), keywords, list(s)) for s in signatures]
    if any(reason is None for reason in reasons):
        return None
    return reasons[0]


def _reason(callee: str, positional: int, keywords: list[str], params: list[Param]) -> str | None:
    by_position = [p for p in params if p.kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    takes_any_positional = any(p.kind == "VAR_POSITIONAL" for p in params)
    takes_any_keyword = any(p.kind == "VAR_KEYWORD" for p in params)
    if positional > len(by_position) and not takes_any_positional:
        return f"{callee}() takes {len(by_position)} positional argument(s), {positional} given"
    named = {p.name: p for p in params if p.kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")}
    for name in keywords:
        param = named.get(name)
        if param is None and not takes_any_keyword:
            return f"{callee}() has no parameter {name!r}"
        if param is not None and param in by_position[:positional]:
            return f"{callee}() got {name!r} both by position and by keyword"
    given = {p.name for p in by_position[:positional]} | set(keywords)
    missing = [
        p.name
        for p in params
        if p.kind not in ("VAR_POSITIONAL", "VAR_KEYWORD")
        and not p.has_default
        and p.name not in given
    ]
    if missing:
        return f"{callee}() is missing argument(s) {', '.join(missing)}"
    return None
