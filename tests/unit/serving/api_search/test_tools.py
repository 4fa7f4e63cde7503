"""The pause/search/resume loop with a scripted engine emitting ToolCoder markup, the
failure paths (unclosed call, timeout, error, cap) and the constrained automatic mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.api_search.index import ScoredEntry
from serving.api_search.tools import ApiToolsConfig, ToolSession
from serving.engine.base import EngineOutput, GenerationRequest
from tests.support.fakes import ScriptedEngine


@dataclass
class PromptScriptedEngine(ScriptedEngine):
    """Streams the script of the last marker found in the prompt; one-token constrained
    requests take the allowed token with the highest bias (else the smallest id)."""

    scripts: list[tuple[str, list[str]]] = field(default_factory=list)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        if request.allowed_token_ids is not None:
            self.requests.append(request)
            bias = request.logit_bias or {}
            token = max(request.allowed_token_ids, key=lambda t: (bias.get(t, 0.0), -t))
            yield EngineOutput(self.decode([token]), 1, True, "length", token_ids=(token,))
            return
        prompt = self.decode(request.prompt_token_ids)
        self.chunks = [c for marker, c in self.scripts if marker in prompt][-1]
        async for output in super().generate(request):
            yield output


def _hit(name: str) -> ScoredEntry:
    return ScoredEntry(pb.ApiEntry(qualified_name=name, kind="function", source="stdlib"), 1.0)


async def _search_json(query: str, limit: int) -> list[ScoredEntry]:
    return [_hit("json.loads"), _hit("json.load")][:limit]


def _run(session: ToolSession, prompt: str, max_tokens: int = 64) -> tuple[str, list[EngineOutput]]:
    async def collect() -> list[EngineOutput]:
        request = GenerationRequest("r1", session._engine.encode(prompt), max_tokens)
        return [o async for o in session.generate(request)]

    outputs = asyncio.run(collect())
    return "".join(o.text_delta for o in outputs), outputs


def test_toolcoder_call_pauses_searches_splices_and_resumes() -> None:
    engine = PromptScriptedEngine(
        scripts=[
            ("", ["x = ", "<AP", "I>APISearch(", "parse json", ")->", "json.made_up", "</API>"]),
            ("</API>", ["json.loads(s)"]),
        ]
    )
    session = ToolSession(engine, _search_json, ApiToolsConfig(auto_mode="off"), "")
    text, outputs = _run(session, "def f(s):\n    ")
    assert text == "x = json.loads(s)"  # no markup reaches the user
    assert outputs[-1].finished and not any(o.finished for o in outputs[:-1])
    call = session.tool_calls[0]
    assert (call.trigger, call.query, call.outcome) == ("toolcoder", "parse json", "ok")
    assert list(call.results) == ["json.loads", "json.load"]
    first, resumed = engine.requests
    assert first.request_id in engine.aborted  # the engine stopped at the call's head
    assert engine.decode(resumed.prompt_token_ids).endswith(
        "x = <API>APISearch(parse json)->json.loads, json.load</API>"
    )


def _failures(outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "quill_api_tool_failures_total", {"trigger": "toolcoder", "outcome": outcome}
    )
    return value or 0.0


def test_unclosed_call_continues_without_the_tool() -> None:
    before = _failures("unclosed")
    engine = PromptScriptedEngine(scripts=[("", ["a = 1", "<API>APISearch(", "never closes"])])
    session = ToolSession(engine, _search_json, ApiToolsConfig(auto_mode="off"), "")
    text, _ = _run(session, "p")
    assert "<" not in text and text.startswith("a = 1")
    assert [c.outcome for c in session.tool_calls] == ["unclosed"]
    assert _failures("unclosed") == before + 1


def test_search_timeout_and_error_never_hang_the_completion() -> None:
    async def slow(query: str, limit: int) -> list[ScoredEntry]:
        await asyncio.sleep(30)
        return []

    async def broken(query: str, limit: int) -> list[ScoredEntry]:
        raise RuntimeError("index gone")

    for search, outcome in ((slow, "timeout"), (broken, "error")):
        before = _failures(outcome)
        engine = PromptScriptedEngine(
            scripts=[("", ["y = ", "<API>APISearch(q)->", "z"]), ("y = ", ["y = 2"])]
        )
        config = ApiToolsConfig(auto_mode="off", search_timeout_s=0.05)
        session = ToolSession(engine, search, config, "")
        started = time.perf_counter()
        text, outputs = _run(session, "p")
        assert time.perf_counter() - started < 5
        assert text == "y = y = 2" and outputs[-1].finished
        assert [c.outcome for c in session.tool_calls] == [outcome]
        assert _failures(outcome) == before + 1


def test_calls_past_the_cap_are_dropped() -> None:
    engine = PromptScriptedEngine(
        scripts=[
            ("", ["<API>APISearch(one)->"]),
            ("</API>", ["b", "<API>APISearch(two)->"]),
            ("b", ["c"]),
        ]
    )
    session = ToolSession(engine, _search_json, ApiToolsConfig(auto_mode="off", max_calls=1), "")
    text, _ = _run(session, "p")
    assert [c.outcome for c in session.tool_calls] == ["ok", "capped"]
    assert "<" not in text


def test_token_budget_covers_every_segment() -> None:
    engine = PromptScriptedEngine(
        scripts=[("", ["<API>APISearch(q)->"]), ("</API>", ["a", "b", "c", "d", "e"])]
    )
    session = ToolSession(engine, _search_json, ApiToolsConfig(auto_mode="off"), "")
    _, outputs = _run(session, "p", max_tokens=3)
    assert sum(o.new_token_count for o in outputs) == 3
    assert outputs[-1].finish_reason == "length"


def _auto_session(
    engine: PromptScriptedEngine, hits: list[str], prefix: str, members: dict[str, list[str]]
) -> ToolSession:
    """The automatic mode over `members`, with a search that answers `hits`."""

    async def search(query: str, limit: int) -> list[ScoredEntry]:
        return [_hit(name) for name in hits]

    return ToolSession(
        engine,
        search,
        ApiToolsConfig(max_identifier_tokens=32),
        prefix,
        members=lambda q: members.get(q, []),
    )


def test_automatic_mode_constrains_the_member_after_a_known_module() -> None:
    members = {"shop.billing": ["compute_total", "compute_tax", "refund"]}
    engine = PromptScriptedEngine(
        scripts=[("", ["comptue_totl(items)"]), ("compute_total", ["(items)"])]
    )

    prefix = "from shop import billing\n\n# total of the invoice\nx = billing."
    session = _auto_session(engine, ["shop.billing.compute_total", "os.path.join"], prefix, members)
    text, _ = _run(session, prefix)
    assert text == "compute_total(items)"
    call = session.tool_calls[0]
    assert call.trigger == "auto" and "total of the invoice" in call.query
    assert list(call.results) == ["shop.billing.compute_total"]  # members of billing only
    constrained = [r for r in engine.requests if r.allowed_token_ids is not None]
    assert constrained and all(r.max_tokens == 1 for r in constrained)
    # "compute_" is the only way on after "c": no model call for it.
    assert len(constrained) == 2


def test_automatic_mode_mid_generation_and_unknown_names() -> None:
    members = {"json": ["loads", "dumps"]}
    engine = PromptScriptedEngine(
        scripts=[("", ["v = json.", "lodas(s)\n", "w = foo.", "bar"]), ("json.dumps", ["(s)"])]
    )

    prefix = "import json\n"
    session = _auto_session(engine, ["json.dumps"], prefix, members)
    text, _ = _run(session, prefix)
    assert text == "v = json.dumps(s)"
    assert len(session.tool_calls) == 1


def test_a_member_name_that_begins_longer_ones_ends_where_the_model_ends_it() -> None:
    # "parse" is a member and also begins "parse_from_object": the model must not run on
    # freely from "parse" into an invented "parse_short_description".
    members = {"docstring_parser": ["parse", "parse_from_object", "compose"]}

    prefix = "import docstring_parser\n\n# parse the docstring\nx = docstring_parser."
    engine = PromptScriptedEngine(
        scripts=[("", ["_short_description(doc)"]), ("docstring_parser.parse(", ["doc)"])]
    )
    session = _auto_session(engine, ["docstring_parser.parse"], prefix, members)
    text, _ = _run(session, prefix)
    assert text[:5] == "parse" and text[5] in "().,[: \n"  # the name ended at "parse"
    at_parse = [
        r
        for r in engine.requests
        if r.allowed_token_ids is not None and "_" in engine.decode(r.allowed_token_ids)
    ]
    # At "parse" the model was offered both "_" (go on) and the tokens that end a name.
    assert at_parse and "(" in engine.decode(at_parse[-1].allowed_token_ids)
