"""A model that repeats itself ends its answer; it never fails the run.

Three layers: the embedded model's loop detector (token ids), the calls seam (LiteLLM's
repeated-chunk guard, for any provider), and the outer `composite/<mode>` stream.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import composite_cli
import composite_cli.calls
from composite_cli.calls import RepeatedChunks, is_repetition_guard
from composite_cli.config import Profile, Settings
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.events import CallFinished, TokenDelta
from composite_cli.litellm_loader import add_custom_provider, get_litellm
from composite_cli.local.chat_format import answered_calls, call_key
from composite_cli.local.meter import Meter
from composite_cli.local.model_info import N_CTX, TEXT_SAMPLING
from composite_cli.local.repetition import MIN_SPAN, RepetitionDetector
from composite_cli.local.request import Request

ASK = [{"role": "user", "content": "Name three classical chess openings."}]
LOOP = " classical"


def first_loop(tokens: list[int]) -> int | None:
    """How many tokens the detector takes before it calls the sequence a loop (None: never)."""
    detector = RepetitionDetector()
    for count, token in enumerate(tokens, 1):
        if detector.feed(token):
            return count
    return None


# -- the embedded model's detector, on token ids -----------------------------------------------


def test_one_token_repeated_is_a_loop_at_min_span():
    assert first_loop([7] * 100) == MIN_SPAN
    assert first_loop([1, 2, 3] + [7] * (MIN_SPAN - 1) + [4]) is None


def test_a_short_phrase_needs_the_whole_span_a_sentence_three_copies():
    phrase = [10, 11, 12, 13]
    assert first_loop([1, 2] + phrase * 20) == 2 + MIN_SPAN  # 12 copies of 4 tokens
    assert first_loop(phrase * (MIN_SPAN // 4 - 1)) is None
    sentence = list(range(100, 120))  # 20 tokens
    assert first_loop([1] + sentence * 3) == 1 + 60
    assert first_loop([1] + sentence * 2 + sentence[:19]) is None


def test_ordinary_text_and_short_lists_are_not_loops():
    varied = [(i * 7919) % 1000 for i in range(2000)]
    assert first_loop(varied) is None
    zeros = [5, 6] * 20 + [9]  # "[0, 0, ... 0]": 20 items, 40 tokens
    assert first_loop(zeros) is None
    long_block = list(range(300, 370))  # 70 tokens: longer than any period watched
    assert first_loop(long_block * 3) is None


def test_the_detector_reports_the_loops_period():
    detector = RepetitionDetector()
    for token in [1, 2, 3] * 20:
        if detector.feed(token):
            break
    assert detector.period == 3


def test_the_meter_stops_only_a_watched_completion():
    meter = Meter(threading.Event(), None)
    assert not any(meter.on_token(7, False) for _ in range(200))  # not watched: counts only
    assert meter.completion_tokens == 200 and meter.stopped is None
    meter.watch_repetition()
    meter.begin(10)
    stops = [meter.on_token(7, False) for _ in range(MIN_SPAN)]
    assert stops == [False] * (MIN_SPAN - 1) + [True]
    assert meter.stopped == "repetition"


def test_the_meter_holds_each_completion_to_max_tokens():
    """llama skips its own max_tokens check while a multi-byte character is unfinished; the meter
    ends the completion before the token past the limit, and counts only what was passed on."""
    meter = Meter(threading.Event(), None, max_tokens=3)
    meter.begin(10)
    assert [meter.on_token(5, False) for _ in range(4)] == [False, False, False, True]
    assert meter.completion_tokens == meter.last_call_tokens == 3 and meter.stopped is None
    assert not meter.on_token(2, True)  # the end-of-turn token is never cut (nor counted)
    meter.begin(10)  # the next completion of the same request (tools on "auto") gets its own 3
    assert [meter.on_token(5, False) for _ in range(4)] == [False, False, False, True]
    assert meter.completion_tokens == 6
    meter.begin(N_CTX - 2)  # llama leaves only what the context window has room for; so does the meter
    assert [meter.on_token(5, False) for _ in range(3)] == [False, False, True]
    unlimited = Meter(threading.Event(), None)
    unlimited.begin(10)
    assert not any(unlimited.on_token(5, False) for _ in range(100))


def test_a_looping_answer_ends_with_length_and_says_why():
    from composite_cli.local.generation import _final

    meter = Meter(threading.Event(), None)
    assert "provider_specific_fields" not in _final("stop", meter)
    meter.stopped = "repetition"
    final = _final("stop", meter)
    assert final["finish_reason"] == "length"
    assert final["provider_specific_fields"] == {"stopped": "repetition"}


@pytest.mark.parametrize("params", [{"max_tokens": 0}, {"max_tokens": -1}, {"max_completion_tokens": -3}])
def test_the_embedded_model_refuses_a_token_limit_below_one(params: dict[str, Any]) -> None:
    """llama reads 0 or less as "no limit"; OpenAI answers 400. So does the embedded model's provider."""
    import litellm

    key = next(iter(params))
    with pytest.raises(litellm.BadRequestError, match=f"{key} must be a whole number of at least 1"):
        Request.build(ASK, params, None)
    assert Request.build(ASK, {"max_completion_tokens": 7}, None).sampling["max_tokens"] == 7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": float("nan")}, "temperature must be a finite number of at least 0, got nan"),
        ({"temperature": float("inf")}, "temperature must be a finite number of at least 0, got inf"),
        ({"temperature": -0.5}, "temperature must be a finite number of at least 0, got -0.5"),
        ({"top_p": "all"}, "top_p must be a finite number of at least 0, got 'all'"),
        ({"min_p": float("-inf")}, "min_p must be a finite number, got -inf"),
    ],
)
def test_the_embedded_model_refuses_a_sampling_value_llama_would_use_silently(
    params: dict[str, Any], message: str
) -> None:
    """llama samples at a temperature of NaN or infinity and answers; OpenAI answers 400, and so does
    the embedded model's provider."""
    import litellm

    with pytest.raises(litellm.BadRequestError, match=re.escape(message)):
        Request.build(ASK, params, None)
    kept = Request.build(ASK, {"temperature": 0, "top_p": 0.9, "presence_penalty": -1.5}, None).sampling
    assert (kept["temperature"], kept["top_p"], kept["presence_penalty"]) == (0, 0.9, -1.5)


def test_free_text_gets_a_repeat_penalty_tool_calls_do_not() -> None:
    text = Request.build(ASK, {}, None)
    assert text.text_sampling()["repeat_penalty"] == TEXT_SAMPLING["repeat_penalty"] > 1.0
    assert "repeat_penalty" not in text.sampling  # what tool calls use
    own = Request.build(ASK, {"repeat_penalty": 1.0}, None)
    assert own.text_sampling()["repeat_penalty"] == own.sampling["repeat_penalty"] == 1.0
    json_out = Request.build(ASK, {"response_format": {"type": "json_object"}}, None)
    assert "repeat_penalty" not in json_out.text_sampling()


def test_a_repeated_answered_tool_call_is_recognized():
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
    ]
    again = {"function": {"name": "get_weather", "arguments": '{ "city":"Paris" }'}}
    other = {"function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    assert call_key(again) in answered_calls(history)
    assert call_key(other) not in answered_calls(history)
    assert answered_calls(history[:2]) == set()  # asked but not answered yet


# -- the calls seam: LiteLLM's repeated-chunk guard --------------------------------------------


def stream_chunk(text: str | None = None, finish: str | None = None) -> Any:
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    delta = Delta(content=text, role="assistant")
    return ModelResponseStream(
        model="x", choices=[StreamingChoices(index=0, delta=delta, finish_reason=finish)]
    )


def guard_error(generated: str) -> Exception:
    """What LiteLLM's CustomStreamWrapper raises when its guard fires (MidStreamFallbackError)."""
    from litellm.exceptions import InternalServerError, MidStreamFallbackError

    inner = InternalServerError(
        message=f"The model is repeating the same chunk = {LOOP}.", model="", llm_provider=""
    )
    return MidStreamFallbackError(
        message=str(inner),
        model="x",
        llm_provider="openai",
        original_exception=inner,
        generated_content=generated,
    )


class ScriptedStream:
    """Stands in for `litellm_acompletion`: streams `texts`, then raises `error` (if any)."""

    def __init__(self, texts: list[str], error: Exception | None = None):
        self.texts = texts
        self.error = error
        self.sent = 0
        self.closed = False

    async def __call__(self, **kwargs: Any) -> Any:
        assert kwargs.get("stream"), "only streamed calls meet the guard"
        return self.stream()

    async def stream(self) -> AsyncIterator[Any]:
        try:
            for text in self.texts:
                self.sent += 1
                yield stream_chunk(text)
            if self.error is not None:
                raise self.error
            yield stream_chunk(finish="stop")
        finally:
            self.closed = True


async def run_direct(profile: Profile) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    spec = ModeLibrary().load("direct")
    result = await run_mode(
        spec, RunRequest(messages=ASK, stream=True), profile=profile, subscribers=[events.append]
    )
    return result, events


def streamed(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenDelta))


def call_records(events: list[Any]) -> list[Any]:
    return [e.record for e in events if isinstance(e, CallFinished)]


async def test_the_guard_mid_stream_ends_the_answer_without_the_repeated_tail(monkeypatch, fake_profile):
    texts = ["Openings:", " Italian,", LOOP, *[LOOP] * 30]
    fake = ScriptedStream(texts, guard_error("".join(texts)))
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", fake)
    result, events = await run_direct(fake_profile)
    assert result.text == f"Openings: Italian,{LOOP}"  # one copy kept, the repeats dropped
    assert streamed(events) == result.text  # the caller never saw the repeats either
    assert result.finish_reason == "length" and result.status == "ok"
    (record,) = call_records(events)
    assert (record.status, record.error, record.stopped) == ("ok", None, "repetition")
    assert record.response["stopped"] == "repetition" and record.response["finish_reason"] == "length"
    assert "repeating" not in result.text


async def test_at_the_guards_limit_composite_stops_reading_by_itself(monkeypatch, fake_profile):
    monkeypatch.setattr(get_litellm(), "REPEATED_STREAMING_CHUNK_LIMIT", 10)
    fake = ScriptedStream(["Openings:", *[LOOP] * 200])
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", fake)
    result, events = await run_direct(fake_profile)
    assert result.text == f"Openings:{LOOP}" and result.finish_reason == "length"
    assert fake.sent == 11 and fake.closed  # the stream was closed at the limit, not read to the end
    assert call_records(events)[0].stopped == "repetition"


async def test_repeats_below_the_limit_are_kept_and_sent_as_one_piece(monkeypatch, fake_profile):
    fake = ScriptedStream(["It is", " very", " very", " very", " good", "ha", "ha", "ha"])
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", fake)
    result, events = await run_direct(fake_profile)
    assert result.text == "It is very very very goodhahaha" and result.finish_reason == "stop"
    deltas = [e.text for e in events if isinstance(e, TokenDelta)]
    assert deltas == ["It is", " very", " very very", " good", "ha", "ha", "ha"]  # no two equal in a row
    assert call_records(events)[0].stopped is None


async def test_repeats_at_the_end_of_a_stream_are_released(monkeypatch, fake_profile):
    fake = ScriptedStream(["Done:", " yes", " yes"])
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", fake)
    result, events = await run_direct(fake_profile)
    assert result.text == streamed(events) == "Done: yes yes" and result.finish_reason == "stop"


async def test_other_mid_stream_errors_still_fail_the_call(monkeypatch, fake_profile):
    from litellm.exceptions import MidStreamFallbackError

    error = MidStreamFallbackError(message="connection reset", model="x", llm_provider="openai")
    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", ScriptedStream(["Open"], error))
    with pytest.raises(MidStreamFallbackError):
        await run_direct(fake_profile)


def test_the_guard_is_recognized_through_its_wrappers():
    assert is_repetition_guard(guard_error("x"))
    wrapped = RuntimeError("stream failed")
    wrapped.__cause__ = guard_error("x")
    assert is_repetition_guard(wrapped)
    assert not is_repetition_guard(RuntimeError("The model is repeating itself"))


def test_repeated_chunks_hold_back_only_identical_chunks_over_two_characters():
    repeats = RepeatedChunks(limit=3)
    assert repeats.add("a", "ab") == (["a"], ["ab"])
    assert repeats.add("b", "ab") == (["b"], ["ab"])  # too short to be the guard's business
    assert repeats.add("c", " abc") == (["c"], [" abc"])
    assert repeats.add("d", " abc") == ([], [])
    assert not repeats.looping
    assert repeats.add("e", " abc") == ([], []) and repeats.looping


# -- through real LiteLLM: the guard itself, the inner call and the outer composite stream -------


class LoopingProvider:
    """A LiteLLM custom provider that streams one chunk forever (bounded), as a looping model does."""

    def __init__(self) -> None:
        self.sent = 0

    def chunks(self) -> Any:
        yield {
            "text": "Openings:",
            "tool_use": None,
            "is_finished": False,
            "finish_reason": "",
            "usage": None,
        }
        for _ in range(1000):
            self.sent += 1
            yield {"text": LOOP, "tool_use": None, "is_finished": False, "finish_reason": "", "usage": None}

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for chunk in self.chunks():
            yield chunk

    def streaming(self, *args: Any, **kwargs: Any) -> Any:
        return self.chunks()


@pytest.fixture
def looping_profile() -> tuple[Profile, LoopingProvider]:
    litellm = get_litellm()
    provider = LoopingProvider()
    handler = type("Looping", (litellm.CustomLLM,), {})()
    handler.astreaming = provider.astreaming
    handler.streaming = provider.streaming
    previous = list(litellm.custom_provider_map or [])
    add_custom_provider(litellm, "looping", handler)
    yield Profile("looping", {"*": {"model": "looping/model"}}), provider
    litellm.custom_provider_map = previous


async def test_litellms_real_guard_becomes_a_cut_answer(looping_profile):
    profile, provider = looping_profile
    result, events = await run_direct(profile)
    assert result.text == f"Openings:{LOOP}" == streamed(events)
    assert result.finish_reason == "length"
    assert call_records(events)[0].stopped == "repetition"
    assert result.notes == {"stopped": "repetition"}  # reaches --json and the composite block
    assert provider.sent < 1000  # stopped early, by the guard or at its limit


def test_the_outer_composite_stream_does_not_trip_the_guard(looping_profile, tmp_path):
    profile, _ = looping_profile
    composite_cli.register(settings=Settings(profile=profile, db_path=tmp_path / "traces.db"))
    litellm = get_litellm()
    stream = litellm.completion(model="composite/direct", messages=ASK, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Openings:{LOOP}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]


async def test_the_outer_async_stream_does_not_trip_the_guard(looping_profile, tmp_path):
    profile, _ = looping_profile
    composite_cli.register(settings=Settings(profile=profile, db_path=tmp_path / "traces.db"))
    litellm = get_litellm()
    stream = await litellm.acompletion(model="composite/direct", messages=ASK, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == f"Openings:{LOOP}"


# -- the embedded model, for real ----------------------------------------------------------------


@pytest.mark.real_model
def test_the_quick_start_answers(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_")}
    env["COMPOSITE_DB"] = str(tmp_path / "traces.db")
    # as a user runs it (through the warm worker), but with this test's own worker, stopped after:
    # the user's worker directory is not shared, and no process outlives the test
    env["COMPOSITE_WORKER_DIR"] = str(tmp_path / "worker")
    composite = str(Path(sys.executable).parent / "composite")
    try:
        _quick_start(composite, env, tmp_path)
    finally:
        subprocess.run([composite, "worker", "stop"], env=env, capture_output=True, timeout=60, check=False)


def _quick_start(composite: str, env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        [
            composite,
            "chat",
            "--mode",
            "moa-v1",
            "--json",
            ASK[0]["content"],
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["choices"][0]["message"]["content"].strip()
    assert out["choices"][0]["finish_reason"] in ("stop", "length")
    assert "Error" not in done.stderr
