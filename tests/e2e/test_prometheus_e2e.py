"""A real Prometheus scrapes the real serving process; acceptance counts arrive exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from quill_cli.launcher import ServingProcess, free_port
from tests.conftest import ROOT, lsp_command
from tests.e2e.conftest import serving_log_dir
from tests.support.lsp import complete_at_end, execute, initialize, open_document

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
