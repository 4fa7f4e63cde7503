"""Which generated tokens the completion engine must judge (Repilot's rule, made Python-aware).

Repilot asks the engine only about tokens that can start or extend an identifier: their last
character is alphanumeric, '_' or '.'. Keywords are accepted without asking. For Python we also
accept, without asking, what a completion engine cannot know about: text inside a string or a
comment, number literals, and names being bound (after `for`, `def`, `as`, `lambda`...), which do
not exist yet when they are typed.
"""

from __future__ import annotations

import keyword
import re

_IDENTIFIER_TAIL = re.compile(r"[A-Za-z0-9_.]*$")
# A name being bound: the engine cannot complete what the patch is about to define.
_BINDING = re.compile(
    r"(?:\b(?:for|def|class|as|global|nonlocal|import|except)\s+(?:[\w.]+\s*,\s*|\(\s*)*"
    r"|\blambda\b[^:]*)[\w]*$"
)
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
# A `(` right after one of these opens parentheses, not a call (`if (`, `return (`, `in (`).
_KEYWORD_BEFORE_PAREN = re.compile(r"(?<![\w.])(?:" + "|".join(keyword.kwlist) + r")$")


def extends_identifier(token: str) -> bool:
    """Repilot's rule: the token's last character could be part of a (dotted) name."""
    return bool(token) and (token[-1].isalnum() or token[-1] in "_.")


def needs_engine(patch_so_far: str, token: str, language: str) -> bool:
    """True when appending `token` to `patch_so_far` must be checked by the completion engine."""
    if not extends_identifier(token):
        return False
    if token.strip() in _KEYWORDS:
        return False
    if language != "python":
        return True
    line = (patch_so_far + token).rsplit("\n", 1)[-1]
    if _in_string_or_comment(line):
        return False
    word = _IDENTIFIER_TAIL.search(line)
    tail = word.group() if word else ""
    if not tail or tail[0].isdigit() or tail.rsplit(".", 1)[-1] in _KEYWORDS:
        return False
    head = line[: len(line) - len(tail)]
    if head.endswith(("'", '"')) or (head and head[-1].isdigit()):
        return False
    return _BINDING.search(line) is None


def _in_string_or_comment(line: str) -> bool:
    """Whether the end of `line` is inside a string literal or a comment (one line, no state)."""
    return _code_characters(line)[1]


def _code_characters(text: str) -> tuple[list[int], bool]:
    """The positions of `text` outside string literals and comments, and whether its end is
    inside one (a comment runs to the end of its line)."""
    code: list[int] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif text.startswith(quote, index):
                index += len(quote) - 1
                quote = ""
        elif char == "#":
            newline = text.find("\n", index)
            if newline < 0:
                return code, True
            index = newline
            continue
        elif char in "'\"":
            quote = char * 3 if text.startswith(char * 3, index) else char
            index += len(quote) - 1
        else:
            code.append(index)
        index += 1
    return code, bool(quote)


def common_prefix(continuations: list[str]) -> str:
    """The text every continuation starts with ("" when one of them is empty)."""
    if not continuations:
        return ""
    first, last = min(continuations), max(continuations)
    size = 0
    while size < len(first) and first[size] == last[size]:
        size += 1
    return first[:size]


def closed_call_end(text: str, start: int) -> int | None:
    """The end of the last call closed at or after `start` (the index after its `)`), or None.

    A `(` opens a call when a name, `)` or `]` comes right before it (`f(`, `g()(`, `xs[0](`);
    strings and comments are skipped.
    """
    stack: list[bool] = []  # per open bracket: whether it is a call's `(`
    found = None
    for index in _code_characters(text)[0]:
        char = text[index]
        if char in "([{":
            before = text[:index].rstrip(" \t")
            is_call = char == "(" and bool(before) and (before[-1].isalnum() or before[-1] in "_)]")
            if is_call and _KEYWORD_BEFORE_PAREN.search(before):
                is_call = False
            stack.append(is_call)
        elif char in ")]}" and stack:
            closes_call = stack.pop() and char == ")"
            if closes_call and index >= start:
                found = index + 1
    return found
