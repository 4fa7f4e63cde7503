"""`quill bench typing`: people typing real code, keystroke by keystroke, through the language
server, several editors at once.

Each simulated editor runs its own `quill lsp` (as real editors do) against one `quill serve`,
opens a file whose first lines come from a real source file (the Python standard library), and
types the following lines character by character (Enter brings the next line's indentation, as
editors auto-indent): a steady rate within words, and the pauses
people make (a short one after some spaces and punctuation, a longer one at the end of a line,
and with `--think-share` a stop of `--think-pause` seconds at some line ends, as people make to
think or to read a suggestion); every gap varies log-normally around its kind's length
(`--jitter`). After every keystroke it asks for an inline completion the way editors do as
people type (trigger kind Automatic, after the editor's debounce; a newer keystroke supersedes
the pending request). When what the person types next matches the suggestion on
screen, the language server answers from type-ahead without a model call.

Reported: p50/p95 time from keystroke to a suggestion, the share of requests cancelled
(superseded), type-ahead hits, the shares of single- and multi-line suggestions, and waste:
`wasted_token_share` is the share of all tokens the engine generated that never reached the
screen — tokens of requests whose output was never shown, and of the part of a shown request
generated after what was shown (each language server counts the tokens behind what it showed;
serving counts what it generated). `cancelled_token_share` is the older, narrower figure:
tokens of requests cancelled mid-generation. For streamed multi-line suggestions, the time to
the early first line and to the whole block.

Editors take the server's `quill/inlineCompletionRefresh` (a streamed block on screen grew) and
ask again, as Quill's VS Code and Neovim clients do; `--no-refresh` (or the variant key
`clientRefresh=false`) types with editors that do not, which see only a block's first line.

`--variant NAME:key=value,...` runs the same typing again with other language-server settings
against the same serving, one variant after another, and reports each with ratios to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from quill_cli.bench.report import machine_info, parse_named_options, percentile, write_json
from quill_cli.bench.typist import TypingPace, add_typing_arguments, keystrokes, source_texts


def add_parser(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("typing", help="simulated typing through the language server")
    p.add_argument("--editors", type=int, default=3, help="simulated editors at once")
    p.add_argument("--chars", type=int, default=200, help="characters each editor types")
    add_typing_arguments(p)
    p.add_argument(
        "--no-refresh",
        dest="refresh",
        action="store_false",
        help="editors that ignore refreshes (only the first line of a streamed block shows)",
    )
    p.add_argument("--context-lines", type=int, default=40, help="lines already in the file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1, help="times each variant types, in turns")
    p.add_argument("--address", default=None, help="use this serving (its --metrics too)")
    p.add_argument("--serve-arg", action="append", default=[], help="extra `quill serve` argument")
    p.add_argument(
        "--engine-pace",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: the real engine on this machine; gpu: the SIMULATED engine at a data-centre "
        "GPU's pace (quill serve --engine simulated; docs/benchmarks.md)",
    )
    p.add_argument("--metrics-url", default=None)
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="also run with these initializationOptions (JSON values); repeatable",
    )
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


async def _editor(
    address: str,
    root: Path,
    number: int,
    head: str,
    typed: str,
    args: argparse.Namespace,
    options: dict[str, Any],
) -> dict[str, Any]:
    from quill_cli.lsp_client import StdioLanguageClient

    version = 0  # of the text, so a refresh for an older text is dropped
    refreshes: set[asyncio.Task[Any]] = set()
    refreshed = 0  # answers to refreshes that showed more lines

    def on_refresh(refreshed_uri: str) -> None:
        # The suggestion on screen grew (a block's next lines): ask again where the cursor is,
        # as an editor does when told so, after the request in flight.
        if refreshed_uri == uri and last_ask is not None:
            task = asyncio.ensure_future(ask_again(version, *last_ask))
            refreshes.add(task)
            task.add_done_callback(refreshes.discard)

    # Not a language-server setting: whether this editor takes refreshes (a variant may say).
    options = dict(options)
    takes_refresh = bool(options.pop("clientRefresh", args.refresh))
    client = StdioLanguageClient(
        root,
        {"servingAddress": address, "requestTimeoutS": 60, **options},
        on_refresh=on_refresh if takes_refresh else None,
    )
    await client.start()
    path = root / f"typing_{number}.py"
    text = head
    uri = client.open(path, text)
    latencies: list[float] = []
    requests = suggestions = multi = 0
    pending: asyncio.Task[Any] | None = None
    last_ask: tuple[int, int] | None = None

    async def ask_again(asked_version: int, line: int, character: int) -> None:
        nonlocal refreshed
        if pending is not None:
            await asyncio.wait({pending})
        if asked_version != version:
            return  # typed on meanwhile
        items = await client.inline_completion(uri, line, character, automatic=True)
        if items and asked_version == version:
            refreshed += 1

    pace = TypingPace.from_args(args)
    rng = random.Random(args.seed * 1000 + number)

    async def ask(sent_at: float, line: int, character: int) -> None:
        nonlocal suggestions, multi
        items = await client.inline_completion(uri, line, character, automatic=True)
        if items:
            latencies.append(time.perf_counter() - sent_at)
            suggestions += 1
            insert = items[0].insert_text
            multi += "\n" in (insert if isinstance(insert, str) else insert.value)

    index = 0
    try:
        for key in keystrokes(typed):
            text += key
            index += len(key)
            version += 1
            uri = client.open(path, text)
            keystroke_at = time.perf_counter()
            lines = text.split("\n")
            pause = pace.pause_after(key, rng)
            debounce = args.client_debounce_ms / 1e3
            if pause <= debounce:
                await asyncio.sleep(pause)  # the next keystroke comes before the editor asks
                continue
            await asyncio.sleep(debounce)
            requests += 1
            # Editors keep one request per document in flight; the server supersedes it.
            last_ask = (len(lines) - 1, len(lines[-1]))
            pending = asyncio.create_task(ask(keystroke_at, *last_ask))
            await asyncio.sleep(pause - debounce)
        if pending is not None:
            # The last request may still be generating on a loaded machine; not worth failing.
            await asyncio.wait({pending}, timeout=60)
            pending.cancel()
        if refreshes:
            await asyncio.wait(refreshes, timeout=10)
        stats = await client.execute_command("quill.stats")
    finally:
        for task in refreshes:
            task.cancel()
        await client.stop()
    return {
        "latencies": latencies,
        "keystrokes": index,
        "requests": requests,
        "suggestions": suggestions,
        "multi": multi,
        "type_ahead_hits": stats.get("typeAheadHits", 0),
        "superseded": stats.get("superseded", 0),
        "used_tokens": stats.get("usedTokens", 0),
        "early_first_lines": stats.get("earlyFirstLines", 0),
        "reused": stats.get("reusedInFlight", 0),
        "refreshes_sent": stats.get("refreshesSent", 0),
        "cancelled_on_change": stats.get("cancelledOnChange", 0),
        "held_back": stats.get("heldBack", 0),
        "refreshed": refreshed,
        "streamed_blocks": stats.get("streamedBlocks", []),
        "completions": stats.get("completions", []),
    }


async def _run(args: argparse.Namespace) -> int:
    from quill import envs
    from quill_cli.launcher import ServingProcess

    variants: list[tuple[str, dict[str, Any]]] = [("default", {})]
    variants += [parse_named_options(spec) for spec in args.variant]
    serving = None
    address, metrics_url = args.address, args.metrics_url
    serve_args = list(args.serve_arg)
    if args.engine_pace == "gpu":
        # No GPU here: the simulated engine streams at one's pace under the real serving.
        serve_args.append("--engine=simulated")
        print("engine: SIMULATED at a data-centre GPU's pace (not a model)", file=sys.stderr)
    if address is None:
        log = envs.cache_dir() / "bench-typing-serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        serving = ServingProcess(serve_args, log_path=log).start()
        address, metrics_url = serving.address, serving.metrics_url
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    try:
        # Variants take turns, round after round, so a shared machine's load drifts over all.
        for round_number in range(args.rounds):
            for name, options in variants:
                raw[name].append(await _run_once(address, metrics_url, args, options))
                print(f"round {round_number + 1}: {name} done", file=sys.stderr)
    finally:
        if serving is not None:
            serving.stop()
    runs = {name: _figures(raw[name], args) | {"settings": options} for name, options in variants}
    figures = dict(runs["default"])
    if len(runs) > 1:
        figures["variants"] = runs
        figures["ratios_to_default"] = {
            name: {
                key: round(run[key] / figures[key], 3) if figures[key] else None
                for key in _RATIO_KEYS
            }
            for name, run in runs.items()
            if name != "default"
        }
    figures["engine"] = (
        "SIMULATED (quill serve --engine simulated: a data-centre GPU's pace, no model)"
        if args.engine_pace == "gpu"
        else "real"
    )
    figures["machine"] = machine_info()
    write_json(args.json, figures)
    return 0


_RATIO_KEYS = (
    "keystroke_to_suggestion_p50_ms",
    "keystroke_to_suggestion_p95_ms",
    "wasted_token_share",
    "generated_tokens",
    "suggestions",
)


async def _run_once(
    address: str, metrics_url: str | None, args: argparse.Namespace, options: dict[str, Any]
) -> dict[str, Any]:
    """One round of all editors typing with these settings; raw counts."""

    def metric(name: str) -> float:
        return _metric(metrics_url, name) if metrics_url else 0.0

    generated_before = metric("quill_completion_tokens_total")
    cancelled_before = metric("quill_wasted_tokens_total")
    prompt_before = metric("quill_prompt_tokens_total")
    started = time.perf_counter()
    sources = source_texts(args.seed, args.editors, args.context_lines, args.chars)
    # The editors' project: their files only. Typing inside a large checkout would measure
    # its first indexing and API-catalog build competing with completions, not typing.
    with tempfile.TemporaryDirectory(prefix="quill-typing-") as folder:
        root = Path(folder)
        for number, (head, _) in enumerate(sources):
            (root / f"typing_{number}.py").write_text(head)
        results = await asyncio.gather(
            *(
                _editor(address, root, n, head, typed, args, options)
                for n, (head, typed) in enumerate(sources)
            )
        )
    wall = time.perf_counter() - started
    await asyncio.sleep(1.0)  # the last requests' counters
    merged: dict[str, Any] = {
        key: [x for r in results for x in r[key]] if isinstance(results[0][key], list)
        else sum(r[key] for r in results)
        for key in results[0]
    }  # fmt: skip
    merged["generated"] = metric("quill_completion_tokens_total") - generated_before
    merged["prompt"] = metric("quill_prompt_tokens_total") - prompt_before
    merged["cancelled"] = metric("quill_wasted_tokens_total") - cancelled_before
    merged["wall"] = wall
    return merged


def _figures(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    def total(key: str) -> Any:
        values = [r[key] for r in rounds]
        return [x for v in values for x in v] if isinstance(values[0], list) else sum(values)

    latencies = [x * 1e3 for x in total("latencies")]
    requests, suggestions, multi = total("requests"), total("suggestions"), total("multi")
    generated, used = total("generated"), total("used_tokens")
    blocks = total("streamed_blocks")
    figures: dict[str, Any] = {
        "editors": args.editors,
        "rounds": len(rounds),
        "keystrokes": total("keystrokes"),
        "requests": requests,
        "client_debounce_ms": args.client_debounce_ms,
        "keystrokes_per_second_per_editor": args.cps,
        "suggestions": suggestions,
        "keystroke_to_suggestion_p50_ms": round(percentile(latencies, 50), 1),
        "keystroke_to_suggestion_p95_ms": round(percentile(latencies, 95), 1),
        "keystroke_to_suggestion_mean_ms": round(statistics.fmean(latencies), 1)
        if latencies
        else 0.0,
        "cancelled_share": _share(total("superseded"), requests),
        "cancelled_at_keystroke": total("cancelled_on_change"),
        "wasted_token_share": _share(max(0.0, generated - used), generated),
        "cancelled_token_share": _share(total("cancelled"), generated),
        "generated_tokens": generated,
        "shown_tokens": used,
        "wasted_tokens": max(0.0, generated - used),
        "type_ahead_hits": total("type_ahead_hits"),
        "answered_from_stream_in_flight": total("reused"),
        "early_first_lines": total("early_first_lines"),
        "refreshes_sent": total("refreshes_sent"),
        "answers_to_refreshes": total("refreshed"),
        "multi_line_share": _share(multi, suggestions),
        "single_line_share": _share(suggestions - multi, suggestions),
        "wall_s": round(total("wall"), 1),
        "seed": args.seed,
        "think_share": args.think_share,
        "think_pause_s": args.think_pause,
        "jitter": args.jitter,
        "held_back": total("held_back"),
        "serve_args": args.serve_arg,
    }
    figures["prompt_tokens"] = total("prompt")
    figures["where_tokens_went"] = _breakdown(total("completions"))
    if blocks:
        first = [pair[0] * 1e3 for pair in blocks]
        whole = [pair[1] * 1e3 for pair in blocks]
        figures["streamed_blocks"] = len(blocks)
        figures["time_to_first_line_p50_ms"] = round(percentile(first, 50), 1)
        figures["time_to_full_block_p50_ms"] = round(percentile(whole, 50), 1)
        figures["first_line_over_full_block_p50"] = round(
            statistics.median(f / w for f, w in zip(first, whole, strict=True) if w), 3
        )
    return figures


def _breakdown(completions: list[dict[str, Any]]) -> dict[str, Any]:
    """Generated and shown tokens per mode and per outcome, from the language servers' logs of
    their serving calls (a cancelled multi-line call's last partial line is not in them)."""
    result: dict[str, Any] = {}
    for mode in (False, True):
        calls = [c for c in completions if c["multiLine"] is mode]
        name = "multi_line" if mode else "single_line"
        by_outcome = {}
        for outcome in sorted({c["outcome"] for c in calls}):
            group = [c for c in calls if c["outcome"] == outcome]
            by_outcome[outcome] = {
                "calls": len(group),
                "tokens": sum(c["tokens"] for c in group),
                "shown_tokens": sum(min(c["shownTokens"], c["tokens"]) for c in group),
                "median_seconds": round(statistics.median(c["seconds"] for c in group), 2),
            }
        result[name] = by_outcome
    # Calls serving was asked for, by the kind of place they were made at.
    by_place: dict[str, Any] = {}
    for call in completions:
        if call["outcome"] == "dropped":
            continue
        place = by_place.setdefault(
            call.get("place", "?"), {"calls": 0, "tokens": 0, "shown_tokens": 0, "shown_calls": 0}
        )
        shown = min(call["shownTokens"], call["tokens"])
        place["calls"] += 1
        place["tokens"] += call["tokens"]
        place["shown_tokens"] += shown
        place["shown_calls"] += bool(call["shownTokens"])
    result["asked_by_place"] = by_place
    return result


def _share(part: float, whole: float) -> float:
    return round(part / whole, 3) if whole else 0.0
