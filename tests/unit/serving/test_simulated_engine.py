"""serving/engine/simulated.py with the default model's real tokenizer: the pace it keeps, the
text it copies from the prompt, stop strings and token limits, its queue, and what it does when
a request goes away."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.engine.base import GenerationRequest
from serving.engine.simulated import SimulatedEngine, SimulatedPace, prompt_lookup
from serving.model_store import resolve_model

PROMPT = "def area(r):\n    return 3.14 * r * r\n\n\ndef perimeter(r):\n    return"


@pytest.fixture(scope="module")
def model() -> str:
    return resolve_model(None)


def _engine(model: str, **pace: float) -> SimulatedEngine:
    return SimulatedEngine.start(model, SimulatedPace.from_options(pace))


async def _run(engine: SimulatedEngine, request: GenerationRequest) -> tuple[list, float]:  # type: ignore[type-arg]
    started = time.perf_counter()
    outputs = [output async for output in engine.generate(request)]
    return outputs, time.perf_counter() - started


def _request(engine: SimulatedEngine, text: str = PROMPT, **fields: object) -> GenerationRequest:
    return GenerationRequest(
        request_id="r", prompt_token_ids=engine.encode(text), **{"max_tokens": 8, **fields}
    )


def test_copies_what_followed_the_prompts_last_tokens_earlier() -> None:
    tokens = prompt_lookup([5, 6, 7, 8, 9, 5, 6, 7], filler=[0])
    assert [next(tokens) for _ in range(4)] == [8, 9, 5, 6]
    # A final token never seen before: continue after an earlier one's occurrence.
    tokens = prompt_lookup([1, 2, 3, 1, 2, 99], filler=[0])
    assert [next(tokens) for _ in range(3)] == [3, 1, 2]
    assert [next(prompt_lookup([4], filler=[0, 1])) for _ in range(2)] == [0, 0]


async def test_time_to_first_token_and_per_token_pace(model: str) -> None:
    engine = _engine(model, ttft_ms=80, tpot_ms=20)
    outputs, seconds = await _run(engine, _request(engine, max_tokens=10))
    assert len(outputs) == 10 and outputs[-1].finished and outputs[-1].finish_reason == "length"
    assert sum(o.new_token_count for o in outputs) == 10
    # 80 ms + 9 steps of 20 ms = 260 ms; an event loop only ever comes late, never early.
    assert 0.26 <= seconds < 0.26 + 0.25
    assert outputs[0].queue_wait_s is not None and outputs[0].queue_wait_s < 0.05
    assert engine.model_name.startswith("simulated:")


async def test_text_continues_the_prompt_and_stops_at_a_stop_string(model: str) -> None:
    engine = _engine(model, ttft_ms=1, tpot_ms=1)
    outputs, _ = await _run(engine, _request(engine, max_tokens=40, stop=("\n",)))
    text = "".join(o.text_delta for o in outputs)
    # The prompt ends like the earlier `return`: the copy goes on as that line did.
    assert text == " 3.14 * r * r"
    assert outputs[-1].finish_reason == "stop" and "\n" not in text


async def test_running_requests_share_steps_and_extra_ones_queue(model: str) -> None:
    engine = _engine(model, ttft_ms=50, tpot_ms=25, max_seqs=2)
    results = await asyncio.gather(
        *(_run(engine, _request(engine, max_tokens=6)) for _ in range(3))
    )
    seconds = sorted(s for _, s in results)
    # Two run at once (50 + 5 x 25 = 175 ms each); the third waits for a place.
    assert seconds[1] < 0.175 + 0.15
    assert seconds[2] >= 0.175 * 2
    waits = sorted(outputs[0].queue_wait_s for outputs, _ in results)
    assert waits[0] < 0.05 and waits[2] >= 0.15


async def test_a_request_that_goes_away_frees_its_place(model: str) -> None:
    engine = _engine(model, ttft_ms=5, tpot_ms=5, max_seqs=1)
    stream = engine.generate(_request(engine, max_tokens=1000))
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    outputs, seconds = await _run(engine, _request(engine, max_tokens=2))
    assert len(outputs) == 2 and seconds < 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttft": 1}, "unknown simulated-engine setting ttft"),
        ({"tpot_ms": 0}, "tpot_ms must be a number above 0"),
        ({"max_seqs": "many"}, "max_seqs must be a number above 0"),
    ],
)
def test_bad_settings_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatedPace.from_options(options)
