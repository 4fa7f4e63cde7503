from __future__ import annotations

from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import BM25Index, search_together, tokenize_code


def test_tokenize_splits_snake_and_camel_case_and_keeps_whole_names() -> None:
    tokens = tokenize_code("parseHTTPResponse(user_id, XMLHttpRequest2)")
    assert tokens[:4] == ["parsehttpresponse", "parse", "http", "response"]
    assert "user_id" in tokens and "user" in tokens and "id" in tokens
    assert "xml" in tokens and "request" in tokens and "2" not in tokens  # one-char parts dropped


def test_bm25_ranks_the_document_sharing_rare_terms_first() -> None:
    index = BM25Index()
    index.add(1, "def load_config(path): return read_yaml(path)")
    index.add(2, "def save_config(config, path): write_yaml(config, path)")
    index.add(3, "def render_page(template): return template.render()")
    ranked = index.search("config = load_config(path)", 3)
    assert [doc for doc, _ in ranked][:2] == [1, 2]
    assert 3 not in [doc for doc, _ in ranked]


def test_bm25_remove_and_re_add() -> None:
    index = BM25Index()
    index.add(1, "alpha beta")
    index.add(2, "gamma delta")
    index.remove([1])
    assert index.search("alpha", 5) == []
    assert len(index) == 1
    index.add(2, "alpha")  # re-adding an id replaces its text
    assert [doc for doc, _ in index.search("alpha", 5)] == [2]
    assert index.search("gamma", 5) == []


def test_rrf_rewards_agreement_between_rankings() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == 1 / 61 + 1 / 62
    assert reciprocal_rank_fusion([]) == []


def test_indices_searched_together_score_as_one() -> None:
    documents = {
        1: "def compute_invoice_total(items, tax_rate)",
        2: "class InvoiceLedger: post entries",
        3: "def parse_http_response(raw)",
        4: "total = sum(prices)",
        5: "def read_csv(path)",
    }
    whole, first, second = BM25Index(), BM25Index(), BM25Index()
    for doc_id, text in documents.items():
        whole.add(doc_id, text)
        (first if doc_id <= 2 else second).add(doc_id, text)
    for query in ("invoice total", "http response", "csv"):
        tokens = tokenize_code(query)
        assert search_together([first, second], tokens, 5) == whole.search(query, 5), query
