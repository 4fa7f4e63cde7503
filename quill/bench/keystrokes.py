"""`quill bench typing`: people typing real code, keystroke by keystroke, through the language
server, several editors at once.

Each simulated editor runs its own `quill lsp` (as real editors do) against one `quill serve`,
opens a file whose first lines come from a real source file (the Python standard library), and
types the following lines character by character: a steady rate within words, and the pauses
people make (a short one after some spaces and punctuation, a longer one at the end of a line).
After every keystroke it asks for an inline completion the way editors do (a newer keystroke
supersedes the pending request). When what the person types next matches the suggestion on
screen, the language server answers from type-ahead without a model call.

Reported: p50/p95 time from keystroke to a suggestion, the share of requests cancelled
(superseded), engine tokens wasted on cancelled requests as a share of all generated tokens
(`wasted_token_share`), type-ahead hits, and the shares of single- and multi-line suggestions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path
from typing import Any

from quill.bench.report import machine_info, percentile, write_json

DEFAULT_FILES = ("json/decoder.py", "textwrap.py", "shlex.py", "fractions.py", "csv.py", "glob.py")


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("typing", help="simulated typing through the language server")
    p.add_argument("--editors", type=int, default=3, help="simulated editors at once")
    p.add_argument("--chars", type=int, default=200, help="characters each editor types")
    p.add_argument("--cps", type=float, default=8.0, help="keystrokes per second within words")
    p.add_argument("--line-pause", type=float, default=1.0, help="seconds paused after a newline")
    p.add_argument("--word-pause", type=float, default=0.4, help="seconds paused after some spaces")
    p.add_argument(
        "--client-debounce-ms", type=float, default=200, help="the editor's own debounce (0: none)"
    )
    p.add_argument("--context-lines", type=int, default=40, help="lines already in the file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--address", default=None, help="use this serving (its --metrics too)")
    p.add_argument("--metrics-url", default=None)
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def _sources(seed: int, editors: int, context_lines: int, chars: int) -> list[tuple[str, str]]:
    """(text already in the file, text the editor will type) per editor."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rng = random.Random(seed)
    result = []
    for index in range(editors):
        lines = (stdlib / DEFAULT_FILES[index % len(DEFAULT_FILES)]).read_text().split("\n")
        start = rng.randrange(0, max(1, len(lines) - context_lines - 40))
        head = "\n".join(lines[start : start + context_lines]) + "\n"
        rest = "\n".join(lines[start + context_lines :])
        result.append((head, rest[:chars]))
    return result


async def _editor(
    address: str, number: int, head: str, typed: str, args: argparse.Namespace
) -> dict[str, Any]:
    from lsp_server.stdio_client import StdioLanguageClient

    client = StdioLanguageClient(Path.cwd(), {"servingAddress": address, "requestTimeoutS": 60})
    await client.start()
    path = Path.cwd() / f"typing_{number}.py"
    text = head
    uri = client.open(path, text)
    latencies: list[float] = []
    requests = suggestions = multi = 0
    pending: asyncio.Task[Any] | None = None
    interval = 1.0 / args.cps
    rng = random.Random(args.seed * 1000 + number)

    async def ask(sent_at: float, line: int, character: int) -> None:
        nonlocal suggestions, multi
        items = await client.inline_completion(uri, line, character)
        if items:
            latencies.append(time.perf_counter() - sent_at)
            suggestions += 1
            insert = items[0].insert_text
            multi += "\n" in (insert if isinstance(insert, str) else insert.value)

    index = 0
    try:
        while index < len(typed):
            text += typed[index]
            index += 1
            uri = client.open(path, text)
            keystroke_at = time.perf_counter()
            lines = text.split("\n")
            pause = interval
            if typed[index - 1] == "\n":
                pause += args.line_pause
            elif typed[index - 1] in " ,(:." and rng.random() < 0.3:
                pause += args.word_pause
            debounce = args.client_debounce_ms / 1e3
            if pause <= debounce:
                await asyncio.sleep(pause)  # the next keystroke comes before the editor asks
                continue
            await asyncio.sleep(debounce)
            requests += 1
            # Editors keep one request per document in flight; the server supersedes it.
            pending = asyncio.create_task(ask(keystroke_at, len(lines) - 1, len(lines[-1])))
            await asyncio.sleep(pause - debounce)
        if pending is not None:
            await asyncio.wait_for(pending, 60)
        stats = await client.execute_command("quill.stats")
    finally:
        await client.stop()
    return {
        "latencies": latencies,
        "keystrokes": index,
        "requests": requests,
        "suggestions": suggestions,
        "multi": multi,
        "type_ahead_hits": stats.get("typeAheadHits", 0),
        "superseded": stats.get("superseded", 0),
    }


async def _run(args: argparse.Namespace) -> int:
    from quill import envs
    from quill.launcher import ServingProcess

    serving = None
    address, metrics_url = args.address, args.metrics_url
    if address is None:
        log = envs.cache_dir() / "bench-typing-serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        serving = ServingProcess(log_path=log).start()
        address, metrics_url = serving.address, serving.metrics_url
    try:
        generated_before = (
            _metric(metrics_url, "quill_completion_tokens_total") if metrics_url else 0
        )
        wasted_before = _metric(metrics_url, "quill_wasted_tokens_total") if metrics_url else 0
        started = time.perf_counter()
        sources = _sources(args.seed, args.editors, args.context_lines, args.chars)
        results = await asyncio.gather(
            *(_editor(address, n, head, typed, args) for n, (head, typed) in enumerate(sources))
        )
        wall = time.perf_counter() - started
        await asyncio.sleep(1.0)
        generated = (
            _metric(metrics_url, "quill_completion_tokens_total") - generated_before
            if metrics_url
            else 0
        )
        wasted = (
            _metric(metrics_url, "quill_wasted_tokens_total") - wasted_before if metrics_url else 0
        )
    finally:
        if serving is not None:
            serving.stop()
    latencies = [x for r in results for x in r["latencies"]]
    requests = sum(r["requests"] for r in results)
    keystrokes = sum(r["keystrokes"] for r in results)
    suggestions = sum(r["suggestions"] for r in results)
    figures = {
        "editors": args.editors,
        "keystrokes": keystrokes,
        "requests": requests,
        "client_debounce_ms": args.client_debounce_ms,
        "keystrokes_per_second_per_editor": args.cps,
        "suggestions": suggestions,
        "keystroke_to_suggestion_p50_ms": round(percentile([x * 1e3 for x in latencies], 50), 1),
        "keystroke_to_suggestion_p95_ms": round(percentile([x * 1e3 for x in latencies], 95), 1),
        "cancelled_share": round(sum(r["superseded"] for r in results) / requests, 3)
        if requests
        else 0.0,
        "wasted_token_share": round(wasted / generated, 3) if generated else 0.0,
        "generated_tokens": generated,
        "wasted_tokens": wasted,
        "type_ahead_hits": sum(r["type_ahead_hits"] for r in results),
        "multi_line_share": round(sum(r["multi"] for r in results) / suggestions, 3)
        if suggestions
        else 0.0,
        "single_line_share": round(1 - sum(r["multi"] for r in results) / suggestions, 3)
        if suggestions
        else 0.0,
        "wall_s": round(wall, 1),
        "seed": args.seed,
        "machine": machine_info(),
    }
    if latencies:
        figures["keystroke_to_suggestion_mean_ms"] = round(statistics.fmean(latencies) * 1e3, 1)
    write_json(args.json, figures)
    print(f"{suggestions} suggestions for {requests} keystrokes", file=sys.stderr)
    return 0
