"""Which tokens guided repair asks the completion engine about, the trie and the memo."""

from __future__ import annotations

import asyncio

import pytest

from serving.repair.memo import FeasibilityMemo
from serving.repair.tokens import (
    closed_call_end,
    common_prefix,
    extends_identifier,
    needs_engine,
)
from serving.repair.trie import RejectedPrefixTrie


@pytest.mark.parametrize(
    ("patch", "token", "expected"),
    [
        ("    return ", "reslt", True),  # an identifier: ask
        ("    x = foo", ".", True),  # an attribute access starts: ask
        ("    x = foo", ".bar", True),
        ("    return x", " +", False),  # last character cannot extend a name
        ("    return x", "(", False),
        ("    ", " return", False),  # a keyword
        ("    x = ", "12", False),  # a number literal
        ("    x = 1", ".5", False),
        ("    x = 'ab", "cd", False),  # inside a string
        ('    x = f"{a', "bc", False),
        ("    x = 1  # fix", "me", False),  # inside a comment
        ("    for ", "idx", False),  # a name being bound
        ("    for a, ", "b", False),
        ("    def ", "helper", False),
        ("    f = lambda ", "k", False),
        ("    for idx in ", "rng", True),  # used, not bound: ask
        ("    x = 'a' + ", "b", True),  # after a closed string
    ],
)
def test_which_tokens_need_the_engine(patch: str, token: str, expected: bool) -> None:
    assert needs_engine(patch, token, "python") is expected


def test_other_languages_use_repilots_plain_rule() -> None:
    assert needs_engine("  let x = 'ab", "cd", "javascript") is True
    assert needs_engine("  let x = a", " +", "javascript") is False
    assert extends_identifier("_") and extends_identifier("a.") and not extends_identifier(")")


def test_common_prefix_of_continuations() -> None:
    assert common_prefix(["end", "ends"]) == "end"
    assert common_prefix(["", "gth"]) == ""
    assert common_prefix(["pper", "pdate"]) == "p"
    assert common_prefix([]) == ""


def test_trie_rejects_every_extension_of_a_rejected_prefix() -> None:
    trie = RejectedPrefixTrie()
    trie.add("    return reslt")
    assert trie.rejects("    return reslt")
    assert trie.rejects("    return reslts")
    assert not trie.rejects("    return resl")
    assert not trie.rejects("    return result")
    trie.add("    return reslt.x")  # already covered by a shorter prefix
    assert len(trie) == 1


def test_memo_asks_once_per_prefix_even_concurrently() -> None:
    asked: list[str] = []

    async def ask(prefix: str) -> list[str] | None:
        asked.append(prefix)
        await asyncio.sleep(0.01)
        return ["nd"] if prefix.endswith("appe") else []

    async def scenario() -> list[list[str] | None]:
        memo = FeasibilityMemo()
        answers = await asyncio.gather(*(memo.get("x.appe", ask) for _ in range(3)))
        answers.append(await memo.get("x.appe", ask))
        answers.append(await memo.get("x.zzz", ask))
        assert (memo.queries, memo.hits) == (2, 3)
        return list(answers)

    answers = asyncio.run(scenario())
    assert asked == ["x.appe", "x.zzz"]
    assert answers == [["nd"], ["nd"], ["nd"], ["nd"], []]


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("return f(x)", 0, 11),  # a call closes
        ("return (x)", 0, None),  # parentheses, not a call
        ('x = f(g(1), ")")', 5, 16),  # a `)` in a string does not count
        ("if (a) and f(b", 0, None),  # still open
        ("xs[0](1)", 0, 8),  # calling a subscript
        ("f(a) + (b)", 9, None),  # closed before `start`
        ("f(a) # g(b)", 0, 4),  # comments are skipped
    ],
)
def test_closed_call_end_finds_the_call_a_token_closes(
    text: str, start: int, end: int | None
) -> None:
    assert closed_call_end(text, start) == end
