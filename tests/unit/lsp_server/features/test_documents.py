"""What the language server keeps per document is freed when the document closes: through the
real server (what `quill.stats` reports it keeps), and measured with tracemalloc on the state
it keeps."""

from __future__ import annotations

import gc
import tracemalloc

from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_server.state import SessionState
from tests.conftest import ROOT, in_process_serving
from tests.support.fakes import ScriptedEngine
from tests.support.lsp import complete_at_end, execute, initialize, open_document

TEXT = "def add(a, b):\n    return "
DOCUMENTS = 30


async def test_closing_documents_frees_what_the_server_kept_for_them(
    client: LanguageClient,
) -> None:
    uris = [(ROOT / "tests" / "data" / f"closed_{n}.py").as_uri() for n in range(DOCUMENTS)]
    async with in_process_serving(ScriptedEngine(chunks=["a + b"])) as address:
        await initialize(client, servingAddress=address)
        for uri in uris:
            open_document(client, uri, TEXT)
            assert (await complete_at_end(client, uri, TEXT)).items
        kept = (await execute(client, "quill.stats"))["documentsKept"]
        assert kept == {"open": DOCUMENTS, "state": DOCUMENTS, "typeAhead": DOCUMENTS,
                        "telemetry": DOCUMENTS}  # fmt: skip
        for uri in uris:
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri))
            )
        kept = (await execute(client, "quill.stats"))["documentsKept"]
    assert kept == {"open": 0, "state": 0, "typeAhead": 0, "telemetry": 0}


def test_forgetting_a_document_returns_its_memory() -> None:
    state = SessionState()
    uris = [f"file:///project/module_{n}.py" for n in range(1000)]
    prefix = "def add(a, b):\n    return " * 4

    def used() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        baseline = used()
        for n, uri in enumerate(uris):
            state.document(uri).latest_request = n
            state.typeahead.remember(uri, len(prefix), prefix, f"s{n}", "a + b" * 10, 7)
        grown = used() - baseline
        for uri in uris:
            state.forget_document(uri)
        left = used() - baseline
    finally:
        tracemalloc.stop()
    print(f"kept per document: {grown / len(uris):.0f} B open, {left / len(uris):.0f} B closed")
    assert len(state.documents) == len(state.typeahead) == 0
    assert grown > 300_000  # several hundred bytes per open document
    # What is left is the dicts' own slots (a dict does not shrink), not per-document state.
    assert left < grown / 4
