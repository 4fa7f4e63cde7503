"""A scripted editing session through the language server (a subprocess) and the real serving
layer (in this process, on a scripted engine): the editor's snippets reach the prompt once,
retention checks fire on short delays with exact counts, and serving attributes shown, accepted
and retained counts to the context source and the origin of the item accepted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest_lsp
from lsprotocol import types
from prometheus_client import REGISTRY
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import in_process_serving, lsp_command
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete, edit, execute, initialize, open_document

LANGUAGE = "kotlin"  # a label no other test uses, so this test's counts stand alone
CONTEXT = "open_document+recent_edit"
HELPERS_TEXT = (
    "fun computeInvoiceTotal(items: List<LineItem>, taxRate: Double): Double {\n"
    "    val subtotal = items.sumOf { it.price * it.quantity }\n"
    "    return subtotal * (1 + taxRate)\n"
    "}\n"
)
LINE_ITEM_BEFORE = "data class LineItem(\n    val price: Double,\n)\n"
LINE_ITEM_AFTER = "data class LineItem(\n    val price: Double,\n    val quantity: Int,\n)\n"
MAIN_TEXT = "val items = listOf(LineItem(price = 3.0, quantity = 2))\nval total = "
CLOSED_TEXT = "val items = listOf(LineItem(price = 1.0, quantity = 1))\nval closed = "
SUGGESTION = "computeInvoiceTotal(items, taxRate)"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts() -> dict[str, float]:
    """This test's series: by language (retention) and by context (attribution)."""
    found = {}
    for after in ("1s", "2s"):
        for name in ("retained", "checked"):
            found[f"{name} {after}"] = value(
                f"quill_suggestion_chars_{name}_total", language=LANGUAGE, mode="single",
                after=after,
            )  # fmt: skip
            for origin in ("fresh", "type_ahead"):
                found[f"{name} {after} {origin}"] = value(
                    f"quill_context_chars_{name}_total", context=CONTEXT, origin=origin,
                    after=after,
                )  # fmt: skip
    for origin in ("fresh", "type_ahead"):
        for name in ("shown", "accepted"):
            found[f"{name} {origin}"] = value(
                f"quill_context_suggestions_{name}_total", context=CONTEXT, origin=origin
            )
    return found


async def test_retention_and_attribution_of_a_scripted_session(
    client: LanguageClient, tmp_path: Path
) -> None:
    helpers, line_item, main, closed_uri = (
        (tmp_path / name).as_uri() for name in ("Helpers.kt", "LineItem.kt", "Main.kt", "Closed.kt")
    )
    engine = ScriptedEngine(chunks=[SUGGESTION, "\n"], max_model_len=4096)
    before = counts()
    length = len(SUGGESTION)
    async with in_process_serving(engine) as address:
        await initialize(
            client,
            root=tmp_path,
            servingAddress=address,
            completionMode="single",
            retentionChecksS=[1, 2],
            retrievalTokenBudget=1000,  # the scripted engine's tokens are characters
        )
        open_document(client, helpers, HELPERS_TEXT, LANGUAGE)
        open_document(client, line_item, LINE_ITEM_BEFORE, LANGUAGE)
        edit(client, line_item, 2, (2, 0), (2, 0), "    val quantity: Int,\n")  # just written
        open_document(client, main, MAIN_TEXT, LANGUAGE)

        # 1. Accepted, then its last three characters deleted: retained = length - 3.
        item = (await complete(client, main, 1, 12)).items[0]
        assert item.insert_text == SUGGESTION
        edit(client, main, 2, (1, 12), (1, 12), SUGGESTION)  # the editor inserts it...
        await execute(client, item.command.command, *item.command.arguments)  # ...and says so
        edit(client, main, 3, (1, 12 + length - 3), (1, 12 + length), "")

        # 2. On a new line: the user types its first character, type-ahead offers the rest,
        #    the user accepts it and keeps it: retained = length - 1 (what the accept inserted).
        edit(client, main, 4, (1, 12 + length - 3), (1, 12 + length - 3), "\nval more = ")
        first = (await complete(client, main, 2, 11)).items[0]
        edit(client, main, 5, (2, 11), (2, 11), SUGGESTION[0])
        rest = (await complete(client, main, 2, 12)).items[0]
        assert rest.insert_text == SUGGESTION[1:]
        assert rest.command.arguments[0] == first.command.arguments[0]  # the same suggestion
        edit(client, main, 6, (2, 12), (2, 12), SUGGESTION[1:])
        await execute(client, rest.command.command, *rest.command.arguments)

        # 3. Accepted in another document that closes before its checks: both are reported at
        #    the close with what was known then (all of it).
        open_document(client, closed_uri, CLOSED_TEXT, LANGUAGE)
        closed = (await complete(client, closed_uri, 1, 13)).items[0]
        edit(client, closed_uri, 2, (1, 13), (1, 13), SUGGESTION)
        await execute(client, closed.command.command, *closed.command.arguments)
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=closed_uri)
            )
        )

        expected = {
            "retained 1s": (length - 3) + (length - 1) + length,
            "retained 2s": (length - 3) + (length - 1) + length,
            "checked 1s": length + (length - 1) + length,
            "checked 2s": length + (length - 1) + length,
            "retained 1s fresh": (length - 3) + length,
            "retained 2s fresh": (length - 3) + length,
            "checked 1s fresh": 2 * length,
            "checked 2s fresh": 2 * length,
            "retained 1s type_ahead": length - 1,
            "retained 2s type_ahead": length - 1,
            "checked 1s type_ahead": length - 1,
            "checked 2s type_ahead": length - 1,
            "shown fresh": 3,
            "accepted fresh": 2,
            "shown type_ahead": 0,
            "accepted type_ahead": 1,
        }
        after: dict[str, float] = {}
        deadline = time.monotonic() + 60  # checks at 1 s and 2 s, events batched every 2 s
        while after != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now = counts()
            after = {key: now[key] - before[key] for key in expected}
        stats: Any = await execute(client, "quill.stats")
    assert after == expected
    assert stats["retentionChecks"] == 6
    assert {c["context"] for c in stats["completions"]} == {CONTEXT}
    # The helper's window and the edited region went into every prompt, once each, before
    # the document itself (introduced by the last "file:" comment).
    assert len(engine.requests) == 3  # type-ahead asked no model
    for request in engine.requests:
        prompt = engine.decode(request.prompt_token_ids)
        assert prompt.count("// file: Helpers.kt\n") == 1
        assert prompt.count("fun computeInvoiceTotal") == 1
        assert prompt.count("// file: LineItem.kt\n") == 1
        assert prompt.count("val quantity: Int,") == 1
        assert prompt.rindex("// file: ") > prompt.index("val quantity: Int,")


async def test_unusable_check_delays_are_reported_once_and_the_defaults_kept(
    client: LanguageClient, tmp_path: Path
) -> None:
    await initialize(client, root=tmp_path, servingAddress="127.0.0.1:9", retentionChecksS=[45])
    for _ in range(50):
        messages = [m.message for m in client.messages if "retentionChecksS" in m.message]
        if messages:
            break
        await asyncio.sleep(0.1)
    assert len(messages) == 1
    assert "[45] are not check delays" in messages[0] and "defaults used" in messages[0]
