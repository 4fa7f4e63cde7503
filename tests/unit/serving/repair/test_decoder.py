"""The guided decoder on a token-level scripted engine and a scripted completion engine:
pruning, proactive completion, the memo and the trie across samples, resumes and bans."""

from __future__ import annotations

import asyncio

from serving.repair.decoder import DecodeParams, RepairDecoder, SampleResult
from serving.repair.guide import CompletionGuide
from serving.repair.prompt import Region, build_prompt
from tests.support.fakes import ScriptedNameOracle, TokenScriptedEngine

FILE = "def total(items):\n    result = sum(items)\n    return reslt\n"
REGION = Region(tuple(FILE.split("\n")), 2, 2)


def last_line_script(table: dict[str, list[tuple[str, float]]]):  # type: ignore[no-untyped-def]
    """Script keyed by the current last line (the patch, for a one-line region)."""
    return lambda text: table.get(text.rsplit("\n", 1)[-1], [])


def decode(
    engine: TokenScriptedEngine,
    guide: CompletionGuide | None,
    samples: int = 1,
    top_logprobs: int = 4,
) -> list[SampleResult]:
    prompt = build_prompt(REGION, "", "regenerate", engine.encode, 1000)
    params = DecodeParams("t", max_tokens=16, temperature=0.0, seed=0,
                          top_logprobs=top_logprobs, line_count=1)  # fmt: skip
    decoder = RepairDecoder(engine, prompt, params, guide)

    async def run() -> list[SampleResult]:
        return [await decoder.sample(i) for i in range(samples)]

    return asyncio.run(run())


MISSPELLING = {
    "   ": [(" return", -0.1)],
    "    return": [(" reslt", -0.2), (" result", -0.9)],
    "    return reslt": [("\n", -0.1)],
    "    return result": [("\n", -0.3)],
}


def test_unguided_keeps_the_models_misspelling() -> None:
    engine = TokenScriptedEngine(last_line_script(MISSPELLING))
    [result] = decode(engine, None)
    assert result.patch == "    return reslt"
    assert len(engine.requests) == 1


def test_guided_prunes_the_infeasible_token_and_takes_the_feasible_alternative() -> None:
    engine = TokenScriptedEngine(last_line_script(MISSPELLING))
    oracle = ScriptedNameOracle()
    guide = CompletionGuide(oracle, "python")
    [result] = decode(engine, guide)
    assert result.patch == "    return result"
    assert "    return reslt" in oracle.queries
    # Generated freely, aborted at the infeasible token, resumed once after the alternative.
    assert len(engine.requests) == 2
    # (the second one is aborted too: the patch ends at the newline, vLLM would go on)
    assert engine.aborted == [r.request_id for r in engine.requests]
    assert engine.requests[1].prompt_token_ids[-1] == engine.token_id(" result")
    assert guide.stats.pruned_tokens == 1
    # The score is the mean log-probability of the tokens actually taken.
    assert abs(result.score - (-0.1 - 0.9 - 0.3) / 3) < 1e-9


def test_proactive_completion_appends_the_unique_continuation() -> None:
    table = {
        "   ": [(" return", -0.1)],
        "    return": [(" res", -0.2)],
        "    return res": [("\n", -0.1)],  # what the model would do without the completion
        "    return result": [(" +", -0.2)],
        "    return result +": [(" 1", -0.2)],
        "    return result + 1": [("\n", -0.2)],
    }
    engine = TokenScriptedEngine(last_line_script(table))
    guide = CompletionGuide(ScriptedNameOracle(), "python")
    [result] = decode(engine, guide)
    assert result.patch == "    return result + 1"
    assert guide.stats.proactive_chars == len("ult")
    # Resumed from the completed name, re-tokenized.
    assert engine.decode(engine.requests[1].prompt_token_ids).endswith("    return result")


def test_memo_and_trie_answer_later_samples_without_asking_again() -> None:
    engine = TokenScriptedEngine(last_line_script(MISSPELLING))
    oracle = ScriptedNameOracle()
    guide = CompletionGuide(oracle, "python")
    results = decode(engine, guide, samples=3)
    assert {r.patch for r in results} == {"    return result"}
    assert len(oracle.queries) == len(set(oracle.queries)) == 2
    # Samples 2 and 3: the misspelling is pruned by the trie, the fix is found in the memo.
    assert (guide.stats.trie_prunes, guide.stats.memo_hits) == (2, 2)


def test_trie_prunes_extensions_of_a_rejected_prefix_without_asking() -> None:
    oracle = ScriptedNameOracle()
    guide = CompletionGuide(oracle, "python")

    async def scenario() -> None:
        assert not (await guide.check("    return", " reslt")).feasible
        assert not (await guide.check("    return reslt", "s")).feasible
        assert not (await guide.check("    return reslt", ".x")).feasible
        assert (await guide.check("    return", " result")).feasible

    asyncio.run(scenario())
    assert oracle.queries == ["    return reslt", "    return result"]
    assert guide.stats.trie_prunes == 2


def test_all_top_alternatives_infeasible_bans_them_for_one_step() -> None:
    table = {
        "   ": [(" return", -0.1)],
        "    return": [(" reslt", -0.1), (" rslt", -0.5), (" result", -1.5)],
        "    return result": [("\n", -0.1)],
    }
    engine = TokenScriptedEngine(last_line_script(table))
    guide = CompletionGuide(ScriptedNameOracle(), "python")
    [result] = decode(engine, guide, top_logprobs=1)
    assert result.patch == "    return result"
    banned = [r for r in engine.requests if r.logit_bias]
    assert len(banned) == 1
    assert banned[0].max_tokens == 1
    assert set(banned[0].logit_bias or {}) == {engine.token_id(" reslt"), engine.token_id(" rslt")}
    assert all(v <= -100 for v in (banned[0].logit_bias or {}).values())


def test_an_engine_that_cannot_answer_accepts_the_token() -> None:
    engine = TokenScriptedEngine(last_line_script(MISSPELLING))
    guide = CompletionGuide(ScriptedNameOracle(unavailable=True), "python")
    [result] = decode(engine, guide)
    assert result.patch == "    return reslt"
    assert guide.stats.unavailable == 1


def test_prompt_styles_keep_the_indentation_and_show_the_buggy_line() -> None:
    engine = TokenScriptedEngine(lambda text: [])
    hint = build_prompt(
        REGION, "NameError: name 'reslt' is not defined", "hint", engine.encode, 999
    )
    text = engine.decode(hint.token_ids)
    assert text.endswith("    # buggy: return reslt\n    # fixed:\n   ")
    assert "    # error: NameError: name 'reslt' is not defined\n" in text
    assert hint.head == "   "
    plain = build_prompt(REGION, "", "regenerate", engine.encode, 999)
    assert engine.decode(plain.token_ids) == "def total(items):\n    result = sum(items)\n   "
    rewrite = engine.decode(build_prompt(REGION, "", "rewrite", engine.encode, 999).token_ids)
    # The whole buggy block first, then the block again up to the region.
    assert rewrite == (
        FILE + "\n\n\n# Fixed version of the code above (the bug is in `return reslt`)\n"
        "def total(items):\n    result = sum(items)\n   "
    )
    short = build_prompt(REGION, "", "regenerate", engine.encode, 3)
    assert len(short.token_ids) == 3
