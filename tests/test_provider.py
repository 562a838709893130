"""The LiteLLM provider: composite/<mode> through litellm.completion, sync/async/stream."""

from __future__ import annotations

import json
import sqlite3

import pytest

import composite_cli
from composite_cli.config import Profile, Settings

USER = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CALL = {
    "id": "call_7",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


@pytest.fixture
def handler(fake_model, tmp_path):
    settings = Settings(
        profile=Profile("priced", {"*": {"model": "openai/gpt-4o-mini"}}),
        db_path=tmp_path / "traces.db",
        profiles={"other": {"*": {"model": "openai/gpt-4o"}}},
    )
    return composite_cli.register(settings=settings)


@pytest.fixture
def litellm(handler):
    from composite_cli.litellm_loader import get_litellm

    return get_litellm()


def test_sync_completion_returns_a_model_response(litellm, handler, fake_model, tmp_path):
    fake_model.on("answer", "Paris")
    response = litellm.completion(model="composite/moa-v1", messages=USER)
    handler.runner.flush()  # traces are written in the background
    assert response.choices[0].message.content == "Paris"
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "composite/moa-v1"
    info = response._hidden_params["composite"]
    assert info["mode"] == "moa-v1" and info["calls"] == 4
    # usage and cost are summed over the 4 internal calls
    records = sqlite3.connect(tmp_path / "traces.db")
    pt, ct, cost = records.execute(
        "select sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) from steps where kind='llm' and run_id=?",
        [info["run_id"]],
    ).fetchone()
    assert response.usage.prompt_tokens == pt and response.usage.completion_tokens == ct
    assert litellm.completion_cost(completion_response=response) == pytest.approx(cost)
    # LiteLLM prefixes provider headers; the proxy passes them on as response headers
    assert response._hidden_params["additional_headers"]["llm_provider-x-composite-run-id"] == info["run_id"]
    source = records.execute("select source from runs where id=?", [info["run_id"]]).fetchone()[0]
    assert source == "python"


async def test_async_completion(litellm, fake_model):
    fake_model.on("rewrite", "better").on("critique", "Too short.")
    response = await litellm.acompletion(
        model="composite/reflect", messages=USER, composite={"params": {"max_rounds": 1}}
    )
    assert response.choices[0].message.content == "better"
    assert response._hidden_params["composite"]["calls"] == 3


def test_sync_stream_sends_final_step_tokens(litellm, fake_model):
    fake_model.on("answer", "The capital of France is Paris.")
    chunks = list(
        litellm.completion(
            model="composite/moa", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1
    assert "".join(texts) == "The capital of France is Paris."
    built = litellm.stream_chunk_builder(chunks)
    assert built.choices[0].message.content == "The capital of France is Paris."
    assert built.usage.prompt_tokens > 0


async def test_async_stream(litellm, fake_model):
    fake_model.on("answer", "Paris it is")
    stream = await litellm.acompletion(model="composite/direct", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris it is"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tools_go_to_the_final_step_and_tool_calls_come_back(litellm, fake_model):
    fake_model.on("answer", None, tool_calls=[CALL])
    response = litellm.completion(model="composite/moa-v1", messages=USER, tools=TOOLS, tool_choice="auto")
    assert response.choices[0].finish_reason == "tool_calls"
    call = response.choices[0].message.tool_calls[0]
    assert call.id == "call_7" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert [r["metadata"]["composite_call"] for r in fake_model.requests if "tools" in r] == ["answer"]


def test_streamed_tool_calls_reassemble(litellm, fake_model):
    fake_model.on("answer", None, tool_calls=[CALL])
    chunks = list(litellm.completion(model="composite/direct", messages=USER, tools=TOOLS, stream=True))
    built = litellm.stream_chunk_builder(chunks)
    assert built.choices[0].finish_reason == "tool_calls"
    call = built.choices[0].message.tool_calls[0]
    assert call.id == "call_7" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_per_request_profile_and_params_do_not_leak(litellm, fake_model):
    litellm.completion(
        model="composite/moa", messages=USER, composite={"profile": "other", "params": {"extra_layers": 1}}
    )
    assert {r["model"] for r in fake_model.requests} == {"openai/gpt-4o"}
    assert len(fake_model.requests) == 7
    fake_model.requests.clear()
    litellm.completion(model="composite/moa", messages=USER)
    assert {r["model"] for r in fake_model.requests} == {"openai/gpt-4o-mini"}
    assert len(fake_model.requests) == 4


def test_unknown_mode_is_a_bad_request_naming_known_modes(litellm):
    with pytest.raises(litellm.BadRequestError, match=r"known modes: .*\bdirect, .*\bmoa-v1\b"):
        litellm.completion(model="composite/nope", messages=USER)


@pytest.mark.parametrize(
    "options",
    [{"params": {"bogus": 1}}, {"profile": "missing"}, {"colour": "red"}, "not a dict"],
)
def test_bad_composite_options_are_bad_requests(litellm, fake_model, options):
    with pytest.raises(litellm.BadRequestError):
        litellm.completion(model="composite/moa", messages=USER, composite=options)
    assert fake_model.requests == []


def test_extra_body_composite_options(litellm, fake_model):
    litellm.completion(
        model="composite/moa", messages=USER, extra_body={"composite": {"params": {"extra_layers": 1}}}
    )
    assert len(fake_model.requests) == 7


def test_provider_error_reaches_caller_as_litellm_error(litellm, fake_model):
    import litellm as real

    fake_model.on("answer", error=real.RateLimitError("slow down", "openai", "gpt-4o-mini"))
    with pytest.raises(real.RateLimitError):
        litellm.completion(model="composite/direct", messages=USER)


def test_router_model_list_with_composite_models(litellm, fake_model):
    fake_model.on("answer", "via router")
    router = litellm.Router(
        model_list=[{"model_name": "smart", "litellm_params": {"model": "composite/moa-v1"}}]
    )
    response = router.completion(model="smart", messages=USER)
    assert response.choices[0].message.content == "via router"


def test_user_is_recorded(litellm, handler, fake_model, tmp_path):
    response = litellm.completion(model="composite/direct", messages=USER, user="user-42")
    handler.runner.flush()
    run_id = response._hidden_params["composite"]["run_id"]
    row = (
        sqlite3.connect(tmp_path / "traces.db")
        .execute("select user from runs where id=?", [run_id])
        .fetchone()
    )
    assert row[0] == "user-42"


def test_register_honours_composite_profile_env(fake_model, tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text(
        'profiles:\n  envprof:\n    "*": {model: openai/env-model}\n', encoding="utf-8"
    )
    monkeypatch.setenv("COMPOSITE_CONFIG", str(tmp_path / "c.yaml"))
    monkeypatch.setenv("COMPOSITE_PROFILE", "envprof")
    monkeypatch.setenv("COMPOSITE_DB", str(tmp_path / "env.db"))
    handler = composite_cli.register()
    from composite_cli.litellm_loader import get_litellm

    get_litellm().completion(model="composite/direct", messages=USER)
    handler.runner.flush()
    assert fake_model.requests[-1]["model"] == "openai/env-model"
    assert (tmp_path / "env.db").exists()


def test_litellm_callbacks_see_every_internal_call_tagged(litellm, fake_model, monkeypatch):
    """A user's litellm.callbacks (Langfuse, OpenTelemetry, ...) see each inner call with the run id."""
    from litellm.integrations.custom_logger import CustomLogger

    seen: list[dict] = []

    class Spy(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(kwargs)

        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(kwargs)

    # The fake model answers through LiteLLM's mock path, so callbacks fire as for a provider.
    monkeypatch.setattr(litellm, "callbacks", [Spy()])
    response = litellm.completion(model="composite/moa-v1", messages=USER)
    run_id = response._hidden_params["composite"]["run_id"]
    import time

    deadline = time.time() + 60  # the callbacks usually arrive at once; this is a guard
    while time.time() < deadline:
        inner = [
            k for k in seen if (k.get("litellm_params", {}).get("metadata") or {}).get("composite_internal")
        ]
        if len(inner) >= 4:
            break
        time.sleep(0.05)
    tags = [
        (
            k["litellm_params"]["metadata"]["composite_run_id"],
            k["litellm_params"]["metadata"]["composite_call"],
        )
        for k in inner
    ]
    assert sorted(tags) == sorted((run_id, n) for n in ("analyst", "teacher", "skeptic", "answer"))
