"""A real Prometheus scrapes the real serving process; acceptance, retained characters and
attribution counts arrive exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from quill_cli.launcher import ServingProcess, free_port
from tests.conftest import ROOT, lsp_command
from tests.e2e.conftest import serving_log_dir
from tests.support.lsp import complete, complete_at_end, edit, execute, initialize, open_document

pytestmark = pytest.mark.e2e


@pytest.fixture
def prometheus(real_serving: ServingProcess, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus must be installed (scripts/setup.sh test does it)"
    rules = sorted(str(p) for p in (ROOT / "ops" / "prometheus" / "rules").glob("*.yml"))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": rules,
                "scrape_configs": [
                    {"job_name": "quill-serving",
                     "static_configs": [{"targets": [real_serving.metrics_address]}]}
                ],
            }
        )
    )  # fmt: skip
    address = f"127.0.0.1:{free_port()}"
    log = open(serving_log_dir() / "prometheus.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address={address}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        url = f"http://{address}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("prometheus did not become ready")
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def query(url: str, promql: str) -> float | None:
    params = urllib.parse.urlencode({"query": promql})
    body = json.loads(urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=10).read())
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for_scrape(url: str) -> float:
    """Wait for a fresh scrape of serving and return its timestamp."""
    start = time.time()
    for _ in range(60):
        last = query(url, 'timestamp(up{job="quill-serving"})')
        if last is not None and last > start + 1:
            return last
        time.sleep(0.5)
    raise AssertionError("serving was not scraped")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=lsp_command()))
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield
    await lsp_client.shutdown_session()


async def test_prometheus_records_exact_acceptance(
    client: LanguageClient, real_serving: ServingProcess, prometheus: str
) -> None:
    await initialize(client, servingAddress=real_serving.address, requestTimeoutS=120)
    language = "go"  # a label no other test uses, so this test's counts stand alone
    sums = {
        "shown": f'sum(quill_suggestions_shown_total{{language="{language}"}})',
        "accepted": f'sum(quill_suggestions_accepted_total{{language="{language}"}})',
        "chars": f'sum(quill_suggestion_chars_accepted_total{{language="{language}"}})',
    }
    wait_for_scrape(prometheus)
    before = {key: query(prometheus, q) or 0.0 for key, q in sums.items()}

    prefixes = ["func add(a int, b int) int {\n\treturn a +", "var names = []string{\"a\", \"b\",",
                "func main() {\n\tfmt.Println(\"hello"]  # fmt: skip
    accepted_chars = 0
    shown = 0
    for number, text in enumerate(prefixes):
        uri = (ROOT / "tests" / "data" / f"prom_{number}.go").as_uri()
        open_document(client, uri, text, language)
        result = await complete_at_end(client, uri, text)
        if not result.items:
            continue
        shown += 1
        item = result.items[0]
        if number < 2:  # accept the first two, leave the last one
            await execute(client, item.command.command, *item.command.arguments)
            accepted_chars += len(item.insert_text)
    assert shown == 3, "the model should suggest something for each prefix"

    expected = {"shown": 3.0, "accepted": 2.0, "chars": float(accepted_chars)}
    after: dict[str, float] = {}
    for _ in range(60):  # events are batched every 2 s, scraped every 1 s
        time.sleep(0.5)
        after = {key: (query(prometheus, q) or 0.0) - before[key] for key, q in sums.items()}
        if after == expected:
            break
    assert after == expected
    rate = after["accepted"] / after["shown"]
    assert rate == pytest.approx(2 / 3)


def test_quill_stats_reads_prometheus_and_draws_a_chart(
    prometheus: str, real_serving: ServingProcess, tmp_path: Path
) -> None:
    import subprocess
    import sys

    chart = tmp_path / "latency.png"
    result = subprocess.run(
        [sys.executable, "-m", "quill", "stats", "--prometheus", prometheus, "--window", "10m",
         "--png", str(chart)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "acceptance rate" in result.stdout
    assert chart.read_bytes()[:4] == b"\x89PNG"
    direct = subprocess.run(
        [sys.executable, "-m", "quill", "stats", "--metrics-url", real_serving.metrics_url],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    assert "total" in direct.stdout  # the serving-side total stage has observations


def test_dashboards_and_rules_use_only_metrics_serving_exports(
    real_serving: ServingProcess,
) -> None:
    from tests.ops.promql_names import exposition_names, metric_names_used

    page = urllib.request.urlopen(real_serving.metrics_url, timeout=10).read().decode()
    used = metric_names_used(ROOT / "ops")
    assert used, "the ops/ files should use some metrics"
    missing = used - exposition_names(page)
    assert not missing, f"ops/ uses metrics the live serving process does not export: {missing}"


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Editor:
    """A scripted editor on one document: it types, inserts accepted items, edits."""

    def __init__(self, client: LanguageClient, uri: str, text: str, language: str) -> None:
        self.client, self.uri, self.text, self.version = client, uri, text, 1
        open_document(client, uri, text, language)

    def position(self, offset: int) -> tuple[int, int]:
        before = self.text[:offset]
        return before.count("\n"), _utf16(before.rsplit("\n", 1)[-1])

    def replace(self, start: int, end: int, new: str) -> None:
        self.version += 1
        edit(self.client, self.uri, self.version, self.position(start), self.position(end), new)
        self.text = self.text[:start] + new + self.text[end:]

    def type(self, new: str) -> None:
        self.replace(len(self.text), len(self.text), new)

    async def suggest(self) -> Any:
        line, character = self.position(len(self.text))
        result = await complete(self.client, self.uri, line, character)
        assert result.items, f"the model should suggest something after {self.text[-40:]!r}"
        return result.items[0]

    async def accept(self, item: Any) -> None:
        self.type(item.insert_text)  # the editor inserts it, then runs the item's command
        await execute(self.client, item.command.command, *item.command.arguments)


async def test_prometheus_records_exact_retention_and_attribution(
    client: LanguageClient, real_serving: ServingProcess, prometheus: str
) -> None:
    """A scripted session: suggestions kept, partly deleted, changed, accepted after
    type-ahead, closed before their checks, and shown only. Retention is checked at 2 s and 5 s;
    every retained-character and attribution series must move by exactly what it implies."""
    await initialize(
        client,
        servingAddress=real_serving.address,
        requestTimeoutS=120,
        completionMode="single",
        retentionChecksS=[2, 5],
    )
    language, context = "typescript", "open_document+recent_edit"
    sums = {
        f"{kind} {after}": f'sum(quill_suggestion_chars_{kind}_total{{language="{language}",'
        f' after="{after}"}})'
        for kind in ("retained", "checked")
        for after in ("2s", "5s")
    }
    for origin in ("fresh", "type_ahead"):
        for kind in ("shown", "accepted"):
            sums[f"{kind} {origin}"] = (
                f'sum(quill_context_suggestions_{kind}_total{{context="{context}",'
                f' origin="{origin}"}})'
            )
        sums[f"retained 5s {origin}"] = (
            f'sum(quill_context_chars_retained_total{{context="{context}", origin="{origin}",'
            f' after="5s"}})'
        )
    wait_for_scrape(prometheus)
    before = {key: query(prometheus, q) or 0.0 for key, q in sums.items()}

    data = ROOT / "tests" / "data"
    _Editor(
        client,
        (data / "helpers.ts").as_uri(),
        "export function computeInvoiceTotal(items: LineItem[], taxRate: number): number {\n"
        "  const subtotal = items.reduce((sum, item) => sum + item.price * item.quantity, 0);\n"
        "  return subtotal * (1 + taxRate);\n"
        "}\n",
        language,
    )
    util = _Editor(
        client,
        (data / "lineItem.ts").as_uri(),
        "export interface LineItem {\n  price: number;\n}\n",
        language,
    )
    util.replace(len(util.text) - 2, len(util.text) - 2, "  quantity: number;\n")  # just written
    main = _Editor(
        client,
        (data / "invoice.ts").as_uri(),
        'import { computeInvoiceTotal } from "./helpers";\n'
        'import { LineItem } from "./lineItem";\n\n'
        "const items: LineItem[] = [{ price: 3, quantity: 2 }];\n"
        "const total = computeInvoiceTotal(",
        language,
    )
    # 1. Accepted and kept.
    kept = await main.suggest()
    await main.accept(kept)
    # 2. Accepted, then its last characters deleted.
    main.type("\nconst withTax = computeInvoiceTotal(")
    trimmed = await main.suggest()
    await main.accept(trimmed)
    cut = min(3, len(trimmed.insert_text) - 1)
    main.replace(len(main.text) - cut, len(main.text), "")
    # 3. The user types its first character; type-ahead offers the rest, which is accepted.
    main.type("\nconst doubled = computeInvoiceTotal(")
    whole = await main.suggest()
    assert len(whole.insert_text) >= 2
    main.type(whole.insert_text[0])
    rest = await main.suggest()
    assert rest.insert_text == whole.insert_text[1:]
    assert rest.command.arguments[0] == whole.command.arguments[0]
    await main.accept(rest)
    # 4. Accepted, then one character replaced by one it does not contain.
    main.type("\nconst changed = computeInvoiceTotal(")
    changed = await main.suggest()
    await main.accept(changed)
    middle = len(main.text) - len(changed.insert_text) // 2 - 1
    main.replace(middle, middle + 1, "§")
    # 5. Shown, not accepted.
    main.type("\nconst shown = computeInvoiceTotal(")
    await main.suggest()
    # 6. Accepted in a document closed before its checks: reported at the close.
    closing = _Editor(
        client,
        (data / "closing.ts").as_uri(),
        'import { LineItem } from "./lineItem";\n'
        "const items: LineItem[] = [{ price: 1, quantity: 1 }];\n"
        "const closed = computeInvoiceTotal(",
        language,
    )
    closed = await closing.suggest()
    await closing.accept(closed)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=closing.uri)
        )
    )

    length = {name: len(item.insert_text) for name, item in
              {"kept": kept, "trimmed": trimmed, "rest": rest, "changed": changed,
               "closed": closed}.items()}  # fmt: skip
    retained = (
        length["kept"] + length["trimmed"] - cut + length["rest"] + length["changed"] - 1
        + length["closed"]
    )  # fmt: skip
    checked = sum(length.values())
    expected = {
        "retained 2s": retained, "retained 5s": retained,
        "checked 2s": checked, "checked 5s": checked,
        "shown fresh": 6, "shown type_ahead": 0,
        "accepted fresh": 4, "accepted type_ahead": 1,
        "retained 5s fresh": retained - length["rest"], "retained 5s type_ahead": length["rest"],
    }  # fmt: skip
    after: dict[str, float] = {}
    for _ in range(120):  # the last check 5 s after the last accept; batches every 2 s
        time.sleep(0.5)
        after = {key: (query(prometheus, q) or 0.0) - before[key] for key, q in sums.items()}
        if after == expected:
            break
    assert after == expected
    stats = await execute(client, "quill.stats")
    assert stats["retentionChecks"] == 10
    # Every prompt had the helper's window and the just-written field (serving's own record
    # agrees, or the attribution series above would not have moved).
    assert [c["context"] for c in stats["completions"]] == [context] * 6
