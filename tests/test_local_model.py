"""The embedded SmolLM2 model through LiteLLM, for real (offline, a few seconds per test at most).

It is a 135M-parameter model, so the tests check the shape of what comes back, never the wording.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported: no network fetch

import litellm
import llama_cpp

from composite_cli import local
from composite_cli.errors import LocalModelError
from composite_cli.local import amx_guard, pool
from composite_cli.local.chat_format import function_calling_messages, plain_messages

pytestmark = pytest.mark.real_model

MODEL = "local/smollm2"
FINISH_REASONS = {"stop", "length"}
HELLO = [{"role": "user", "content": "Say hello to the world."}]
STORY = [{"role": "user", "content": "Write a long story about a dragon."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


SEED = 7  # sampled text varies run to run otherwise; a fixed seed keeps "non-empty" checks stable


@pytest.fixture(scope="module", autouse=True)
def local_provider() -> Iterator[None]:
    """Route "local/..." to LocalLLM the way composite does, and undo it afterwards."""
    saved = list(litellm.custom_provider_map or [])
    litellm.suppress_debug_info = True
    others = [e for e in saved if e.get("provider") != "local"]
    litellm.custom_provider_map = [*others, {"provider": "local", "custom_handler": local.LocalLLM()}]
    litellm.register_model(local.LOCAL_MODEL_INFO)
    yield
    litellm.custom_provider_map = saved


def assert_text_response(response: Any) -> None:
    choice = response.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in FINISH_REASONS
    assert response.model == MODEL
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert litellm.completion_cost(completion_response=response) == 0.0


def assert_weather_call(message: Any) -> dict[str, Any]:
    assert message.tool_calls, message
    call = message.tool_calls[0]
    assert call.id
    assert call.type == "function"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments, dict)
    return arguments


UNSTOPPED_TOKENS = 2000  # what the stories below would generate if nothing stopped them
STOPPED_TOKENS = 200  # far more than a stopped generation makes, far fewer than an unstopped one


@pytest.fixture
def generated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every token the embedded model generates in this test (in [0])."""
    from composite_cli.local.meter import Meter

    count = [0]
    on_token = Meter.on_token

    def counting(self: Meter, token: int, is_end: bool) -> bool:
        count[0] += 1
        return on_token(self, token, is_end)

    monkeypatch.setattr(Meter, "on_token", counting)
    return count


async def wait_until_idle(generated: list[int]) -> None:
    """Wait for every pool instance to be returned, then check the generation was stopped: fewer
    than STOPPED_TOKENS tokens in all, where an unstopped one makes UNSTOPPED_TOKENS. (The 600 s
    bound only ends a hang; it measures nothing.)"""
    deadline = time.monotonic() + 600
    while local.pool_status()["in_use"]:
        if time.monotonic() > deadline:
            pytest.fail(f"instance not released: {local.pool_status()}, {generated[0]} tokens generated")
        await asyncio.sleep(0.01)
    assert generated[0] < STOPPED_TOKENS, f"{generated[0]} tokens: the generation was not stopped"


# --- plain chat --------------------------------------------------------------------------------


def test_sync_completion() -> None:
    response = litellm.completion(model=MODEL, messages=HELLO, max_tokens=16, seed=SEED)
    assert_text_response(response)
    assert response.usage.completion_tokens <= 16


# The model answers this in Japanese: characters of several tokens each, which llama's own max_tokens
# check let run past the limit (15 of 54 such calls answered one token more than asked).
KANJI = [{"role": "user", "content": "Write the Japanese word for cat: 猫"}]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_holds_when_a_character_spans_tokens(stream: bool) -> None:
    for seed in range(6):
        for max_tokens in (3, 5, 8):
            response = await litellm.acompletion(
                model=MODEL,
                messages=KANJI,
                max_tokens=max_tokens,
                seed=seed,
                stream=stream,
                **({"stream_options": {"include_usage": True}} if stream else {}),
            )
            if stream:
                chunks = [chunk async for chunk in response]
                response = litellm.stream_chunk_builder(chunks, messages=KANJI)
            assert 0 < response.usage.completion_tokens <= max_tokens, (seed, max_tokens, response)
            assert "\ufffd" not in (response.choices[0].message.content or "")  # no half character
            assert response.choices[0].finish_reason in FINISH_REASONS


@pytest.mark.asyncio
async def test_async_completion() -> None:
    response = await litellm.acompletion(
        model=MODEL, messages=HELLO, max_tokens=16, temperature=0.2, seed=SEED
    )
    assert_text_response(response)


def test_sync_streaming() -> None:
    stream = litellm.completion(
        model=MODEL,
        messages=STORY,
        max_tokens=24,
        seed=SEED,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = []
    for chunk in stream:
        if not chunks:
            assert local.pool_status()["in_use"] == 1, (
                "the first token should arrive while generation goes on"
            )
        chunks.append(chunk)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3, "tokens should arrive one by one, not in a single chunk"
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    built = litellm.stream_chunk_builder(chunks, messages=STORY)
    assert built.choices[0].message.content == "".join(pieces)
    assert built.choices[0].finish_reason in FINISH_REASONS
    assert built.usage.completion_tokens == usage.completion_tokens
    assert litellm.completion_cost(completion_response=built) == 0.0


@pytest.mark.asyncio
async def test_async_streaming() -> None:
    stream = await litellm.acompletion(
        model=MODEL,
        messages=STORY,
        max_tokens=24,
        seed=SEED,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = []
    async for chunk in stream:
        if not chunks:
            assert local.pool_status()["in_use"] == 1, (
                "the first token should arrive while generation goes on"
            )
        chunks.append(chunk)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3
    assert chunks[-1].usage.completion_tokens > 0
    built = litellm.stream_chunk_builder(chunks, messages=STORY)
    assert built.choices[0].message.content == "".join(pieces)
    assert built.choices[0].finish_reason in FINISH_REASONS


# --- tools ---------------------------------------------------------------------------------------


def test_forced_tool_call() -> None:
    response = litellm.completion(
        model=MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER, max_tokens=32
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert_weather_call(choice.message)
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert litellm.completion_cost(completion_response=response) == 0.0


def test_streaming_tool_call_reassembles() -> None:
    stream = litellm.completion(
        model=MODEL,
        messages=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice=FORCE_WEATHER,
        max_tokens=32,
        stream=True,
    )
    chunks = list(stream)
    deltas = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) >= 2, "the arguments should stream in pieces"
    built = litellm.stream_chunk_builder(chunks, messages=WEATHER_QUESTION)
    assert built.choices[0].finish_reason == "tool_calls"
    assert len(built.choices[0].message.tool_calls) == 1
    assert_weather_call(built.choices[0].message)


@pytest.mark.asyncio
async def test_tool_choice_none_gives_text() -> None:
    response = await litellm.acompletion(
        model=MODEL,
        messages=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="none",
        max_tokens=16,
        seed=SEED,
    )
    assert not response.choices[0].message.tool_calls
    assert_text_response(response)


@pytest.mark.asyncio
async def test_history_with_tool_calls_and_results() -> None:
    history = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": 'What is the weather in "Paris"?'},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
        {"role": "user", "content": [{"type": "text", "text": "Should I bring an umbrella?"}]},
    ]
    plain = await litellm.acompletion(model=MODEL, messages=history, max_tokens=16, seed=SEED)
    assert_text_response(plain)
    called = await litellm.acompletion(
        model=MODEL, messages=history, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER, max_tokens=32
    )
    assert called.choices[0].finish_reason == "tool_calls"
    assert_weather_call(called.choices[0].message)


# --- degenerate output: loops and repeated tool calls ----------------------------------------------

# Greedy decoding without a penalty, asked to continue a run of one word: the model loops.
LOOPING = [
    {"role": "system", "content": "Continue the user's text exactly, the same way."},
    {"role": "user", "content": "classical " * 40},
]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_a_looping_answer_is_ended_with_length_and_says_why(stream: bool) -> None:
    response = await litellm.acompletion(
        model=MODEL, messages=LOOPING, temperature=0, repeat_penalty=1.0, max_tokens=300, stream=stream
    )
    if stream:
        response = litellm.stream_chunk_builder([chunk async for chunk in response], messages=LOOPING)
    choice = response.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.provider_specific_fields == {"stopped": "repetition"}
    assert response.usage.completion_tokens < 300  # ended at the loop, not at max_tokens
    assert "classical classical classical" in choice.message.content


@pytest.mark.asyncio
async def test_auto_never_repeats_a_tool_call_already_answered() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    history = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny in Paris"},
    ]
    for seed in (SEED, SEED + 1, SEED + 2):
        response = await litellm.acompletion(
            model=MODEL, messages=history, tools=[WEATHER_TOOL], tool_choice="auto", max_tokens=48, seed=seed
        )
        message = response.choices[0].message
        for made in message.tool_calls or []:
            assert (made.function.name, json.loads(made.function.arguments)) != (
                "get_weather",
                {"city": "Paris"},
            )
        if not message.tool_calls:
            assert message.content.strip()
            fields = message.provider_specific_fields or {}
            assert fields.get("note") in (
                None,
                "answered instead of repeating an answered tool call (get_weather)",
            )


# --- errors, cancellation, concurrency -----------------------------------------------------------


def test_prompt_over_context_window_raises() -> None:
    too_long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.completion(model=MODEL, messages=too_long, max_tokens=8)


@pytest.mark.asyncio
async def test_prompt_over_context_window_raises_when_streaming(generated: list[int]) -> None:
    too_long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(litellm.ContextWindowExceededError):
        stream = await litellm.acompletion(model=MODEL, messages=too_long, max_tokens=8, stream=True)
        async for _ in stream:
            pass
    await wait_until_idle(generated)


def test_missing_model_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("COMPOSITE_LOCAL_MODEL_PATH", str(tmp_path / "missing.gguf"))
    with pytest.raises(LocalModelError, match=r"missing\.gguf"):
        local.model_path()


@pytest.mark.asyncio
async def test_early_close_of_async_stream_releases_the_instance(generated: list[int]) -> None:
    stream = await litellm.acompletion(model=MODEL, messages=STORY, max_tokens=UNSTOPPED_TOKENS, stream=True)
    received = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 2:
                break
    assert local.pool_status()["in_use"] == 1  # still generating: nobody told it to stop yet
    await stream.aclose()
    await wait_until_idle(generated)
    after = await litellm.acompletion(model=MODEL, messages=HELLO, max_tokens=8)
    assert after.choices[0].message.content


@pytest.mark.asyncio
async def test_cancelled_acompletion_releases_the_instance(generated: list[int]) -> None:
    task = asyncio.create_task(litellm.acompletion(model=MODEL, messages=STORY, max_tokens=UNSTOPPED_TOKENS))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_idle(generated)


@pytest.mark.asyncio
async def test_two_concurrent_calls_both_complete() -> None:
    prompt = [{"role": "user", "content": "Write a short story about a robot."}]

    async def call() -> Any:
        return await litellm.acompletion(model=MODEL, messages=prompt, max_tokens=32, temperature=0.0)

    await asyncio.gather(call(), call())  # load two instances before timing
    t0 = time.perf_counter()
    await call()
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = await asyncio.gather(call(), call())
    two = time.perf_counter() - t0
    for response in results:
        assert_text_response(response)
    # Informational only: timing on shared CI machines is too noisy to assert.
    print(f"\nlocal model: 1 call {one:.2f}s, 2 concurrent {two:.2f}s, ratio {two / one:.2f}")


# --- message normalization (no model) -----------------------------------------------------------


def test_messages_are_normalized_for_both_templates() -> None:
    messages = [
        {"role": "user", "content": None, "name": "bob"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": 'x < "y"'},
    ]
    plain = plain_messages(messages)
    assert plain == [
        {"role": "user", "content": ""},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": 'functions.f:\n{"x": 1}'},
        {"role": "tool", "content": 'x < "y"'},
    ]
    calling = function_calling_messages(messages)
    assert calling[0]["role"] == "system"  # the tool list is only shown inside a system message
    assert calling[-1] == {"role": "user", "content": 'Result of functions.f:\nx < "y"'}
    assert calling[-2]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'


# --- pool configuration (no model) -------------------------------------------------------------


def test_threads_per_instance_follows_the_pool_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert local.threads_per_instance() == 1  # default: one single-threaded instance per core
    monkeypatch.setenv("COMPOSITE_LOCAL_POOL", "2")
    assert local.threads_per_instance() == 4
    monkeypatch.setenv("COMPOSITE_LOCAL_POOL", "16")
    assert local.threads_per_instance() == 1
    monkeypatch.setenv("COMPOSITE_LOCAL_THREADS", "3")
    assert local.threads_per_instance() == 3
    monkeypatch.setenv("COMPOSITE_LOCAL_THREADS", "0")
    with pytest.raises(LocalModelError, match="COMPOSITE_LOCAL_THREADS must be a positive integer"):
        local.threads_per_instance()


# --- the AMX guard (fake system info and fake probe results; nothing is built) --------------------

AMX_INFO = b"CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
NO_AMX_INFO = b"CPU : SSE3 = 1 | AVX2 = 1 | OPENMP = 1 | REPACK = 1 | "


class FakeProbe:
    """Stands in for `amx_guard.probe`: answers `verdict`, records the models it was asked about."""

    def __init__(self, verdict: str | None = "ok"):
        self.verdict = verdict
        self.calls: list[Path] = []

    def __call__(self, model: Path) -> str | None:
        self.calls.append(model)
        return self.verdict


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_probe(monkeypatch: pytest.MonkeyPatch, cache_home: Path) -> FakeProbe:
    probe = FakeProbe()
    monkeypatch.setattr(amx_guard, "probe", probe)
    return probe


def system_info(monkeypatch: pytest.MonkeyPatch, info: bytes) -> None:
    monkeypatch.setattr(llama_cpp, "llama_print_system_info", lambda: info)


def test_real_build_is_not_probed(fake_probe: FakeProbe, cache_home: Path) -> None:
    if amx_guard.amx_compiled_in():
        pytest.skip("this llama-cpp-python has AMX kernels; the guard would probe it")
    amx_guard.check_llama_build(local.model_path())
    assert fake_probe.calls == []
    assert not cache_home.exists(), "no probe, so nothing to cache"


def test_build_without_amx_is_not_probed(
    monkeypatch: pytest.MonkeyPatch, fake_probe: FakeProbe, cache_home: Path
) -> None:
    system_info(monkeypatch, NO_AMX_INFO)
    fake_probe.verdict = "crashes"  # would raise if it were consulted
    amx_guard.check_llama_build(Path("model.gguf"))
    assert fake_probe.calls == []
    assert not cache_home.exists()


def test_amx_build_that_crashes_is_refused_and_probed_once(
    monkeypatch: pytest.MonkeyPatch, fake_probe: FakeProbe
) -> None:
    system_info(monkeypatch, AMX_INFO)
    fake_probe.verdict = "crashes"
    for _ in range(2):
        with pytest.raises(LocalModelError) as raised:
            amx_guard.check_llama_build(Path("model.gguf"))
        message = str(raised.value)
        assert "\n" not in message
        assert "Intel AMX kernels that crash on this machine" in message
        assert (
            'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
            "pip install --force-reinstall --no-cache-dir llama-cpp-python"
        ) in message
    assert fake_probe.calls == [Path("model.gguf")], "the second check should use the cached verdict"
    cached = json.loads(amx_guard.cache_path().read_text())
    assert cached == {amx_guard.library_key(): "crashes"}


def test_amx_build_that_works_is_probed_once(monkeypatch: pytest.MonkeyPatch, fake_probe: FakeProbe) -> None:
    system_info(monkeypatch, AMX_INFO)
    amx_guard.check_llama_build(Path("model.gguf"))
    amx_guard.check_llama_build(Path("model.gguf"))
    assert len(fake_probe.calls) == 1


def test_a_reinstalled_library_is_probed_again(
    monkeypatch: pytest.MonkeyPatch, fake_probe: FakeProbe
) -> None:
    system_info(monkeypatch, AMX_INFO)
    amx_guard.check_llama_build(Path("model.gguf"))
    monkeypatch.setattr(amx_guard, "library_key", lambda: "/elsewhere/libllama.so|1|2")
    fake_probe.verdict = "crashes"
    with pytest.raises(LocalModelError):
        amx_guard.check_llama_build(Path("model.gguf"))
    assert len(fake_probe.calls) == 2
    assert sorted(json.loads(amx_guard.cache_path().read_text()).values()) == ["crashes", "ok"]


def test_inconclusive_probe_is_not_cached(monkeypatch: pytest.MonkeyPatch, fake_probe: FakeProbe) -> None:
    system_info(monkeypatch, AMX_INFO)
    fake_probe.verdict = None  # the child failed without a signal: the real load will say why
    amx_guard.check_llama_build(Path("model.gguf"))
    amx_guard.check_llama_build(Path("model.gguf"))
    assert len(fake_probe.calls) == 2
    assert not amx_guard.cache_path().exists()


def test_corrupt_cache_is_ignored_and_rewritten(
    monkeypatch: pytest.MonkeyPatch, fake_probe: FakeProbe
) -> None:
    system_info(monkeypatch, AMX_INFO)
    amx_guard.cache_path().parent.mkdir(parents=True)
    amx_guard.cache_path().write_text("{not json")
    amx_guard.check_llama_build(Path("model.gguf"))
    assert len(fake_probe.calls) == 1
    assert json.loads(amx_guard.cache_path().read_text()) == {amx_guard.library_key(): "ok"}


def test_pool_refuses_a_crashing_build_before_loading(
    monkeypatch: pytest.MonkeyPatch, fake_probe: FakeProbe
) -> None:
    system_info(monkeypatch, AMX_INFO)
    fake_probe.verdict = "crashes"

    def must_not_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded despite the crashing build")

    monkeypatch.setattr(pool, "MeteredLlama", must_not_load)
    fresh = pool.Pool(size=1, n_threads=1)
    try:
        for _ in range(2):
            with pytest.raises(LocalModelError, match="Intel AMX"), fresh.lease(threading.Event(), None):
                pass
            assert fresh.status()["loaded"] == 0, "a failed load must give its slot back"
        assert len(fake_probe.calls) == 1
    finally:
        fresh.workers.shutdown()


@pytest.mark.parametrize(
    ("script", "verdict"),
    [
        # SIGKILL rather than SIGSEGV: the same "killed by a signal" to the parent, without a core dump.
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "crashes"),
        ("import sys; assert sys.argv[1] == 'model.gguf'", "ok"),
        ("raise SystemExit(3)", None),
    ],
)
def test_probe_verdict_comes_from_how_the_child_ended(
    monkeypatch: pytest.MonkeyPatch, script: str, verdict: str | None
) -> None:
    monkeypatch.setattr(amx_guard, "PROBE_SCRIPT", script)
    assert amx_guard.probe(Path("model.gguf")) == verdict


def test_real_probe_passes_on_this_build() -> None:
    """The probe script itself works: the installed (AMX-free) build evaluates a prompt in a child."""
    assert amx_guard.probe(local.model_path()) == "ok"
