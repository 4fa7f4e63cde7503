"""API search inside generation: a wrapper with the shape of `Engine.generate`.

Two triggers:
- ToolCoder (models trained to call the tool): the model writes `<API>APISearch(query)->`;
  the engine request is stopped there, the catalog is searched, the answer and `</API>` are
  appended, and generation resumes from the extended text (vLLM's prefix cache makes the resume
  cheap). The markup is never shown: the user sees only the code around it.
- Automatic (models without tool training, e.g. SmolLM2): where the text ends in `name.` and
  `name` is an imported module or object the catalog knows, the next identifier is constrained,
  token by token, to the catalog's members of it (`allowed_token_ids` over their token paths),
  nudged towards the members a search with the intent around the cursor ranks first. Optionally
  the top signatures for that intent also go into the prompt (`prompt_context`).

Every failure (search timeout or error, an unclosed call, the call cap) leaves the completion
going without the tool, with a log line and `quill_api_tool_failures_total`; never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from quill import python_api
from quill.v1 import quill_pb2 as pb
from serving import metrics
from serving.api_search.index import ScoredEntry
from serving.context import ContextBlock, RenderedContext, render_context
from serving.engine.base import Engine, EngineOutput, GenerationRequest

logger = logging.getLogger(__name__)

CALL_OPEN = "<API>"
CALL_HEAD = "APISearch("
CALL_ARROW = ")->"
CALL_CLOSE = "</API>"
AUTO_MODES = ("off", "constrain", "prompt", "both")
# `name.` or `name.sub.` at the end of the text, not preceded by an identifier or a dot.
_ATTRIBUTE_POINT = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.$")
_INTENT_LINES = 6
# What may follow a member name (each must be a single token to be offered).
_NAME_ENDS = ("(", ")", ".", ",", "[", ":", " ", "\n")

Search = Callable[[str, int], Awaitable[list[ScoredEntry]]]


@dataclass
class ApiToolsConfig:
    # Detect the ToolCoder markup in the stream.
    toolcoder: bool = True
    # "constrain" (member names after `name.`), "prompt" (top signatures in the prompt),
    # "both" or "off". Chosen by `quill bench api` (docs/api-search.md).
    auto_mode: str = "constrain"
    # Tool calls per completion; further ones are dropped ("capped").
    max_calls: int = 3
    search_timeout_s: float = 1.0
    # A call whose query runs past this without `)->` is treated as never closed.
    max_query_chars: int = 200
    # Qualified names in a ToolCoder answer.
    answer_results: int = 3
    # Signatures placed in the prompt, and the tokens they may take.
    prompt_results: int = 5
    prompt_budget_tokens: int = 256
    # Logit bias for the first tokens of the members the intent search ranks first.
    intent_bias: float = 2.0
    intent_results: int = 3
    # Tokens of one constrained identifier at most.
    max_identifier_tokens: int = 8


def intent_query(prefix: str) -> str:
    """The intent at the cursor: comments and docstring text of the last lines, current line."""
    lines = prefix.split("\n")[-_INTENT_LINES:]
    words = []
    for line in lines:
        text = line.strip().strip("#").strip().strip('"').strip("'").strip()
        if text:
            words.append(text)
    return " ".join(words)[-400:]


def _held_back(text: str) -> int:
    """Length of the longest tail of `text` that could start `<API>`."""
    for size in range(min(len(CALL_OPEN) - 1, len(text)), 0, -1):
        if CALL_OPEN.startswith(text[-size:]):
            return size
    return 0


@dataclass
class _Trie:
    children: dict[int, _Trie] = field(default_factory=dict)
    terminal: bool = False

    def add(self, ids: Sequence[int]) -> None:
        node = self
        for token in ids:
            node = node.children.setdefault(token, _Trie())
        node.terminal = True

    def walk(self) -> Iterator[_Trie]:
        yield self
        for child in self.children.values():
            yield from child.walk()


class ToolSession:
    """Tool use for one completion. `generate` replaces `engine.generate` for it."""

    def __init__(
        self,
        engine: Engine,
        search: Search,
        config: ApiToolsConfig,
        document_prefix: str,
        members: Callable[[str], list[str]] | None = None,
    ) -> None:
        """`members(qualified)` lists the catalog's member names of a module or class."""
        self._engine = engine
        self._search = search
        self._config = config
        self._prefix = document_prefix
        self._members = members
        self._aliases = python_api.import_aliases(document_prefix)
        self.tool_calls: list[pb.ToolCall] = []
        self.context_sources: list[pb.ContextSource] = []

    # -- the prompt part of the automatic mode ------------------------------------------------

    async def prompt_context(
        self, language: str, encode: Callable[[str], list[int]], budget_tokens: int
    ) -> RenderedContext:
        """Top signatures for the intent at the cursor as a prompt block (prompt modes only)."""
        if self._config.auto_mode not in ("prompt", "both") or budget_tokens <= 0:
            return RenderedContext()
        intent = intent_query(self._prefix)
        if not intent:
            return RenderedContext()
        roots = {target.split(".")[0] for target in self._aliases.values()}
        found = await self._run_search("auto", intent, self._config.prompt_results * 4)
        if not found:
            return RenderedContext()
        # APIs of what the file imports first: those are the ones the code can call.
        found.sort(key=lambda hit: hit.entry.qualified_name.split(".")[0] not in roots)
        chosen = found[: self._config.prompt_results]
        text = "\n".join(
            f"{h.entry.qualified_name.rpartition('.')[0] or h.entry.qualified_name}."
            f"{h.entry.signature}  # {h.entry.summary}".rstrip(" #")
            for h in chosen
        )
        block = ContextBlock("api_search", "", 0, 0, text, chosen[0].score)
        rendered = render_context(
            [block], language, min(budget_tokens, self._config.prompt_budget_tokens), encode
        )
        self.context_sources += rendered.sources
        return rendered

    # -- search ---------------------------------------------------------------------------------

    async def _run_search(
        self,
        trigger: str,
        query: str,
        limit: int,
        keep: Callable[[ScoredEntry], bool] | None = None,
    ) -> list[ScoredEntry] | None:
        """Search with the timeout; records the call. None when it failed."""
        started = time.perf_counter()
        outcome = "ok"
        found: list[ScoredEntry] | None = None
        try:
            found = await asyncio.wait_for(
                self._search(query, limit), self._config.search_timeout_s
            )
        except TimeoutError:
            outcome = "timeout"
        except Exception as error:  # noqa: BLE001 - a failed search must not fail the completion
            outcome = "error"
            logger.warning("API search failed (%s): %s", trigger, type(error).__name__)
        latency_ms = (time.perf_counter() - started) * 1e3
        if found is not None and keep is not None:
            found = [hit for hit in found if keep(hit)]
        if outcome != "ok":
            logger.info("API search %s after %.0f ms; continuing without it", outcome, latency_ms)
            metrics.API_TOOL_FAILURES.labels(trigger, outcome).inc()
        metrics.API_TOOL_CALLS.labels(trigger, outcome).inc()
        self.tool_calls.append(
            pb.ToolCall(
                trigger=trigger,
                query=query,
                results=[h.entry.qualified_name for h in found or []],
                latency_ms=latency_ms,
                outcome=outcome,
            )
        )
        return found

    def _fail(self, trigger: str, query: str, outcome: str) -> None:
        logger.info("API tool call %s; continuing without the tool", outcome)
        metrics.API_TOOL_FAILURES.labels(trigger, outcome).inc()
        metrics.API_TOOL_CALLS.labels(trigger, outcome).inc()
        self.tool_calls.append(pb.ToolCall(trigger=trigger, query=query, outcome=outcome))

    # -- the decoding loop ----------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        """Stream visible text; pause for tool calls and constrained identifiers in between."""
        prompt = list(request.prompt_token_ids)
        model_text = ""  # everything the model's context holds after the prompt (markup too)
        pending = ""  # visible text not yet sent (may start a tool call)
        used = 0
        calls = 0
        segment = 0
        tools_on = self._config.toolcoder
        constrain = self._config.auto_mode in ("constrain", "both") and self._members is not None
        finish_reason = "length"
        queue_wait: float | None = None

        def out(text: str, count: int) -> EngineOutput:
            return EngineOutput(text_delta=text, new_token_count=count, finished=False)

        if constrain:
            text, count = await self._constrained_identifier(request, prompt, "", 0)
            if text or count:
                model_text += text
                used += count
                yield out(text, count)
        while used < request.max_tokens:
            segment += 1
            stream = self._engine.generate(
                replace(
                    request,
                    request_id=f"{request.request_id}-{segment}",
                    prompt_token_ids=prompt + self._engine.encode(model_text)
                    if model_text
                    else prompt,
                    max_tokens=request.max_tokens - used,
                )
            )
            paused = False  # stopped for a tool call or a constrained identifier
            call: str | None = None
            try:
                async for step in stream:
                    used += step.new_token_count
                    if queue_wait is None:
                        queue_wait = step.queue_wait_s
                    unsent = pending + step.text_delta
                    model_text += step.text_delta
                    sent_before = model_text[: len(model_text) - len(unsent)]
                    if step.finished:
                        finish_reason = step.finish_reason or "stop"
                    visible, pending, call = self._scan(unsent, tools_on, step.finished)
                    if visible or step.new_token_count:
                        yield replace(out(visible, step.new_token_count), queue_wait_s=queue_wait)
                    if call is not None:
                        # The model opened a tool call (or wrote markup while tools are off):
                        # what it wrote after the call's head is dropped.
                        model_text = sent_before + visible + call
                        paused = True
                        break
                    if constrain and not pending and self._member_point(model_text):
                        paused = True
                        break
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            if not paused:
                break
            if call is not None:
                model_text = model_text[: len(model_text) - len(call)]
                if not tools_on:
                    finish_reason = "stop"
                    break
                calls += 1
                spliced = await self._answer(call, calls)
                if spliced is None:
                    tools_on = False  # go on without the tool; later markup ends the text
                else:
                    model_text += spliced
                continue
            text, count = await self._constrained_identifier(request, prompt, model_text, used)
            model_text += text
            used += count
            if text or count:
                yield out(text, count)
            if used >= request.max_tokens:
                finish_reason = "length"
        if pending and not pending.startswith(CALL_OPEN[: len(pending)]):
            yield out(pending, 0)
        yield EngineOutput(
            text_delta="", new_token_count=0, finished=True, finish_reason=finish_reason
        )

    def _scan(self, pending: str, tools_on: bool, finished: bool) -> tuple[str, str, str | None]:
        """(text the user may see now, text held back, a complete tool-call head or None).

        The returned call is the markup from `<API>` on; once tools are off, any `<API>` is
        returned as a call too, and the caller ends the suggestion there.
        """
        start = pending.find(CALL_OPEN)
        if start < 0:
            keep = 0 if finished else _held_back(pending)
            return pending[: len(pending) - keep], pending[len(pending) - keep :], None
        visible, markup = pending[:start], pending[start:]
        if not tools_on:
            return visible, "", markup
        arrow = markup.find(CALL_ARROW)
        if arrow >= 0:
            return visible, "", markup[: arrow + len(CALL_ARROW)]
        if finished or len(markup) > self._config.max_query_chars + len(CALL_OPEN + CALL_HEAD):
            # Never closed: drop the markup; the caller resumes without the tool.
            return visible, "", markup
        return visible, markup, None

    async def _answer(self, call: str, number: int) -> str | None:
        """The text to splice after the model's call, or None to go on without the tool."""
        body = call[len(CALL_OPEN) :]
        if not call.endswith(CALL_ARROW) or not body.startswith(CALL_HEAD):
            self._fail("toolcoder", body[:80], "unclosed")
            return None
        query = body[len(CALL_HEAD) : -len(CALL_ARROW)].strip().strip("\"'")
        if not query:
            self._fail("toolcoder", "", "empty")
            return None
        if number > self._config.max_calls:
            self._fail("toolcoder", query, "capped")
            return None
        found = await self._run_search("toolcoder", query, self._config.answer_results)
        if found is None:
            return None
        answer = ", ".join(h.entry.qualified_name for h in found)
        return f"{call}{answer}{CALL_CLOSE}"

    # -- the constrained part of the automatic mode ------------------------------------------

    def _member_point(self, model_text: str) -> list[str]:
        """Member names of the module/object the text ends with `name.` on, if known."""
        match = _ATTRIBUTE_POINT.search((self._prefix + model_text)[-200:])
        if match is None or self._members is None:
            return []
        head, _, rest = match.group(1).partition(".")
        target = self._aliases.get(head)
        if target is None:
            return []
        return self._members(f"{target}.{rest}" if rest else target)

    async def _constrained_identifier(
        self, request: GenerationRequest, prompt: list[int], model_text: str, used: int
    ) -> tuple[str, int]:
        """Generate the member name after `name.` among the catalog's members of `name`."""
        members = self._member_point(model_text)
        if not members:
            return "", 0
        match = _ATTRIBUTE_POINT.search((self._prefix + model_text)[-200:])
        written = match.group(1) if match else ""
        intent = f"{intent_query(self._prefix + model_text)} {written}."
        wanted = set(members)
        found = await self._run_search(
            "auto",
            intent.strip(),
            self._config.intent_results * 4,
            keep=lambda hit: hit.entry.qualified_name.rsplit(".", 1)[-1] in wanted,
        )
        favoured = [h.entry.qualified_name.rsplit(".", 1)[-1] for h in found or []]
        favoured = favoured[: self._config.intent_results]
        trie = _Trie()
        for name in members:
            trie.add(self._engine.encode(name))
        favoured_paths = [self._engine.encode(name) for name in favoured]
        node = trie
        chosen: list[int] = []
        count = 0
        base = prompt + self._engine.encode(model_text)
        step = 0
        limit = self._config.max_identifier_tokens
        # A complete name that also begins longer ones ("parse" of "parse_from_object") may
        # end there: then the model chooses between going on and a token that ends the name,
        # else it would go on freely and invent "parse_docstring".
        ends = self._name_ends() if any(n.terminal and n.children for n in trie.walk()) else {}
        while node.children and len(chosen) < limit:
            if used + count >= request.max_tokens:
                break
            allowed = list(node.children) + (list(ends) if node.terminal else [])
            if len(allowed) == 1:
                # Only one way on: take it without asking the model.
                token = allowed[0]
            else:
                step += 1
                # Nudge towards the members the intent search ranked first.
                depth = len(chosen)
                bias = {
                    path[depth]: self._config.intent_bias
                    for path in favoured_paths
                    if len(path) > depth and path[:depth] == chosen
                }
                if node.terminal and chosen in favoured_paths:
                    bias.update(dict.fromkeys(ends, self._config.intent_bias))
                token = await self._one_token(request, base + chosen, allowed, bias, step)
                count += 1
                if token not in allowed:
                    break
            chosen.append(token)
            if token in ends and token not in node.children:
                break  # the name ended with the model's own next token, e.g. "("
            node = node.children[token]
        return self._engine.decode(chosen), count

    def _name_ends(self) -> dict[int, str]:
        """Single tokens that end an identifier: what may follow a complete member name."""
        ends: dict[int, str] = {}
        for text in _NAME_ENDS:
            ids = self._engine.encode(text)
            if len(ids) == 1:
                ends[ids[0]] = text
        return ends

    async def _one_token(
        self,
        request: GenerationRequest,
        prompt: list[int],
        allowed: list[int],
        bias: dict[int, float],
        step: int,
    ) -> int:
        stream = self._engine.generate(
            replace(
                request,
                request_id=f"{request.request_id}-c{len(prompt)}-{step}",
                prompt_token_ids=prompt,
                max_tokens=1,
                stop=(),
                allowed_token_ids=allowed,
                logit_bias={t: b for t, b in bias.items() if t in set(allowed)} or None,
            )
        )
        token = -1
        try:
            async for output in stream:
                if output.token_ids:
                    token = output.token_ids[0]
                elif output.text_delta:
                    ids = self._engine.encode(output.text_delta)
                    token = ids[0] if ids else -1
                break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return token
