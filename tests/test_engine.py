"""The engine: each step kind, failure handling, limits and events, with the fake model."""

from __future__ import annotations

import asyncio

import pytest

from composite_cli.config import Profile
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.errors import BadRequest, FanoutFailed, RunLimitExceeded, StepTimeout, UnknownAliasError
from composite_cli.events import (
    CallFinished,
    CallStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    TokenDelta,
)

USER = [{"role": "user", "content": "What is the capital of France?"}]


def mode(text: str):
    return parse_mode(text)


async def run(spec, fake_profile, **kw):
    events: list = []
    request = RunRequest(messages=kw.pop("messages", USER), **kw)
    result = await run_mode(spec, request, profile=fake_profile, subscribers=[events.append])
    return result, events


async def test_call_step_returns_the_model_answer(fake_model, fake_profile):
    fake_model.add("Paris")
    spec = mode("name: t\nsteps:\n  - {id: answer, kind: call, model: strong}\n")
    result, events = await run(spec, fake_profile)
    assert result.text == "Paris"
    assert result.finish_reason == "stop"
    assert result.calls == 1
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert [type(e) for e in events] == [
        RunStarted,
        StepStarted,
        CallStarted,
        CallFinished,
        StepFinished,
        RunFinished,
    ]
    # the conversation reaches the model as real messages
    assert fake_model.requests[0]["messages"] == USER
    assert fake_model.requests[0]["model"] == "openai/fake-model"


async def test_system_and_prompt_templates_render_with_earlier_outputs(fake_model, fake_profile):
    fake_model.on("first", "ALPHA").on("second", "BETA")
    spec = mode(
        """
name: t
params: {style: terse}
steps:
  - id: first
    kind: call
    model: fast
    system: "Be {{ params.style }}."
  - id: second
    kind: call
    model: strong
    conversation: false
    prompt: "Question: {{ input }} Earlier: {{ first }}"
"""
    )
    result, _ = await run(spec, fake_profile)
    assert result.text == "BETA"
    first = fake_model.request("first")["messages"]
    assert first[0] == {"role": "system", "content": "Be terse."}
    assert first[1:] == USER
    second = fake_model.request("second")["messages"]
    assert second == [{"role": "user", "content": "Question: What is the capital of France? Earlier: ALPHA"}]


async def test_step_system_joins_the_callers_system_message(fake_model, fake_profile):
    spec = mode("name: t\nsteps:\n  - {id: a, kind: call, model: m, system: Mode rules.}\n")
    messages = [{"role": "system", "content": "Caller rules."}, *USER]
    await run(spec, fake_profile, messages=messages)
    sent = fake_model.requests[0]["messages"]
    assert sent[0] == {"role": "system", "content": "Mode rules.\n\nCaller rules."}
    assert sent[1:] == USER


async def test_fanout_experts_run_in_parallel_and_feed_synthesize(fake_model, fake_profile, monkeypatch):
    """The experts' calls are in flight together: each waits until all three have started (run
    one after another, the first would wait forever). The time saved is a figure of
    benchmarks/responsiveness.py and benchmarks/overhead.py, not an assertion."""
    import composite_cli.calls

    started: set[str] = set()
    all_started = asyncio.Event()

    async def barrier(**kwargs):
        name = kwargs["metadata"]["composite_call"]
        if name in ("a", "b", "c"):
            started.add(name)
            if len(started) == 3:
                all_started.set()
            await all_started.wait()
        return await fake_model(**kwargs)

    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", barrier)
    for name in ("a", "b", "c"):
        fake_model.on(name, f"answer {name}")
    fake_model.on("final", "combined")
    spec = mode(
        """
name: t
steps:
  - id: props
    kind: fanout
    experts:
      - {name: a, model: fast, system: "You are A."}
      - {name: b, model: fast, system: "You are B."}
      - {name: c, model: fast}
  - id: final
    kind: synthesize
    from: props
    model: strong
    shuffle: false
"""
    )
    result, _ = await asyncio.wait_for(run(spec, fake_profile), 120)  # a generous guard, not a figure
    assert result.text == "combined"
    assert started == {"a", "b", "c"}
    assert sorted(fake_model.names()) == ["a", "b", "c", "final"]
    system = fake_model.request("final")["messages"][0]
    assert system["role"] == "system"
    assert "1. answer a" in system["content"] and "3. answer c" in system["content"]
    assert "synthesize these responses" in system["content"]
    assert fake_model.request("a")["messages"][0]["content"] == "You are A."


async def test_fanout_samples_one_model_n_times(fake_model, fake_profile):
    spec = mode(
        """
name: t
params: {k: 4}
steps:
  - {id: s, kind: fanout, model: fast, n: $k, temperature: 0.9}
  - {id: pick, kind: vote, from: s}
"""
    )
    result, _ = await run(spec, fake_profile, params={"k": 2})
    assert fake_model.names() == ["sample1", "sample2"]
    assert all(r["temperature"] == 0.9 for r in fake_model.requests)
    assert result.text == "fake answer"


async def test_fanout_tolerates_failures_down_to_min_success(fake_model, fake_profile):
    import litellm

    fake_model.on("a", "ok a").on("b", error=litellm.RateLimitError("slow down", "openai", "m"))
    fake_model.on("c", "ok c").on("final", "merged")
    spec = mode(
        """
name: t
steps:
  - id: props
    kind: fanout
    min_success: 2
    experts: [{name: a, model: f}, {name: b, model: f}, {name: c, model: f}]
  - {id: final, kind: synthesize, from: props, model: s}
"""
    )
    result, events = await run(spec, fake_profile)
    assert result.text == "merged"
    failed = [e.record for e in events if isinstance(e, CallFinished) and e.record.status == "error"]
    assert [r.name for r in failed] == ["b"]
    assert "RateLimitError" in failed[0].error
    content = fake_model.request("final")["messages"][0]["content"]
    assert "1. ok a" in content and "2. ok c" in content


async def test_fanout_fails_clearly_below_min_success(fake_model, fake_profile):
    import litellm

    boom = litellm.InternalServerError("upstream 500", "openai", "m")
    fake_model.on("a", error=boom).on("b", error=boom).on("c", "ok")
    spec = mode(
        """
name: t
steps:
  - id: props
    kind: fanout
    min_success: 2
    experts: [{name: a, model: f}, {name: b, model: f}, {name: c, model: f}]
"""
    )
    with pytest.raises(FanoutFailed, match="only 1 expert"):
        await run(spec, fake_profile)


async def test_reflect_loop_stops_early_when_critique_is_ok(fake_model, fake_profile):
    fake_model.on("draft", "draft one")
    fake_model.on("critique", "Missing detail.").on("critique", "NO ISSUES")
    fake_model.on("rewrite", "draft two")
    spec = ModeLibrary().load("reflect")
    result, _ = await run(spec, fake_profile, params={"max_rounds": 3})
    assert result.text == "draft two"
    assert fake_model.names() == ["draft", "critique", "rewrite", "critique"]
    # the critic sees the draft as the assistant's reply, then the critique prompt
    critic = fake_model.requests[1]["messages"]
    assert critic[-2] == {"role": "assistant", "content": "draft one"}
    assert "NO ISSUES" in critic[-1]["content"]
    rewrite = fake_model.request("rewrite")["messages"][0]["content"]
    assert "draft one" in rewrite and "Missing detail." in rewrite


async def test_reflect_loop_respects_max_rounds(fake_model, fake_profile):
    fake_model.on("critique", "Still wrong.")
    spec = ModeLibrary().load("reflect-v1")
    await run(spec, fake_profile, params={"max_rounds": 2})
    assert fake_model.names() == ["draft", "critique", "rewrite", "critique", "rewrite"]


async def test_if_runs_the_matching_branch(fake_model, fake_profile):
    fake_model.on("classify", "MATH").on("math", "42").on("chat", "hello")
    spec = mode(
        """
name: t
steps:
  - {id: classify, kind: call, model: f}
  - id: route
    kind: if
    when: "'MATH' in classify"
    then: [{id: math, kind: call, model: f}]
    else: [{id: chat, kind: call, model: f}]
"""
    )
    result, _ = await run(spec, fake_profile)
    assert result.text == "42"
    assert fake_model.names() == ["classify", "math"]


async def test_vote_majority_and_judge(fake_model, fake_profile):
    fake_model.on("x", "Paris.").on("y", "London").on("z", " paris ")
    spec = mode(
        """
name: t
steps:
  - id: s
    kind: fanout
    experts: [{name: x, model: f}, {name: y, model: f}, {name: z, model: f}]
  - {id: v, kind: vote, from: s}
"""
    )
    result, _ = await run(spec, fake_profile)
    assert result.text == "Paris."

    fake_model.requests.clear()
    fake_model.on("v2", "Candidate 2 is best")
    judge = mode(
        """
name: t
steps:
  - id: s
    kind: fanout
    experts: [{name: x, model: f}, {name: y, model: f}, {name: z, model: f}]
  - {id: v2, kind: vote, from: s, method: judge, model: judge}
"""
    )
    result, _ = await run(judge, fake_profile)
    assert result.text == "London"
    assert "3 candidate answers" in fake_model.request("v2")["messages"][-1]["content"]


async def test_only_the_final_step_gets_client_tools_and_options(fake_model, fake_profile):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    fake_model.on("answer", None, tool_calls=[call])
    spec = ModeLibrary().load("moa")
    result, _ = await run(
        spec, fake_profile, tools=tools, tool_choice="auto", generation={"temperature": 0.1, "max_tokens": 50}
    )
    for req in fake_model.requests:
        if req["metadata"]["composite_call"] == "answer":
            assert req["tools"] == tools and req["tool_choice"] == "auto"
            assert req["temperature"] == 0.1 and req["max_tokens"] == 50
        else:
            assert "tools" not in req and "temperature" not in req
    assert result.finish_reason == "tool_calls"
    assert result.message["tool_calls"][0]["function"] == call["function"]
    assert result.message["tool_calls"][0]["id"] == "call_1"


async def test_multi_turn_history_with_tool_results_passes_as_messages(fake_model, fake_profile):
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C and sunny"},
    ]
    spec = ModeLibrary().load("moa")
    await run(spec, fake_profile, messages=history)
    for req in fake_model.requests:
        assert req["messages"][-3:] == history or req["messages"][1:4] == history


async def test_streaming_emits_final_step_tokens_only(fake_model, fake_profile):
    fake_model.on("analyst", "AAA").on("teacher", "TTT").on("skeptic", "SSS").on("answer", "the final answer")
    spec = ModeLibrary().load("moa")
    result, events = await run(spec, fake_profile, stream=True)
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert len(deltas) > 1, "the final step streams in several pieces"
    assert "".join(d.text for d in deltas) == "the final answer" == result.text
    answer_step = next(e for e in events if isinstance(e, StepStarted) and e.name == "answer")
    assert all(d.step_id == answer_step.step_id for d in deltas)


async def test_non_streamed_final_value_is_sent_whole(fake_model, fake_profile):
    spec = mode(
        "name: t\nsteps:\n  - {id: s, kind: fanout, model: f, n: 2}\n  - {id: v, kind: vote, from: s}\n"
    )
    result, events = await run(spec, fake_profile, stream=True)
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert [d.text for d in deltas] == [result.text]


async def test_step_timeout(fake_model, fake_profile):
    fake_model.add("late", delay=2)
    spec = mode("name: t\nsteps:\n  - {id: slow, kind: call, model: f, timeout: 0.1}\n")
    with pytest.raises(StepTimeout, match=r"'slow' timed out after 0\.1s"):
        await run(spec, fake_profile)


async def test_expert_timeout_counts_as_a_failed_expert(fake_model, fake_profile):
    fake_model.on("slow", "late", delay=600).on("quick", "fast answer")  # only the timeout ends it
    spec = mode(
        """
name: t
steps:
  - id: s
    kind: fanout
    call_timeout: 0.1
    experts: [{name: slow, model: f}, {name: quick, model: f}]
"""
    )
    result, events = await asyncio.wait_for(run(spec, fake_profile), 120)  # a guard, not a figure
    assert result.text == "1. fast answer"
    slow = next(e.record for e in events if isinstance(e, CallFinished) and e.record.name == "slow")
    assert slow.status == "error" and "Timeout" in slow.error


async def test_max_calls_limit(fake_model, fake_profile):
    spec = mode(
        """
name: t
limits: {max_calls: 2}
steps:
  - {id: s, kind: fanout, model: f, n: 3}
"""
    )
    with pytest.raises(RunLimitExceeded, match="max_calls"):
        await run(spec, fake_profile)


async def test_run_deadline(fake_model, fake_profile):
    fake_model.default.delay = 600  # only the deadline ends it
    spec = mode("name: t\nlimits: {deadline: 0.2}\nsteps:\n  - {id: a, kind: call, model: f}\n")
    with pytest.raises(RunLimitExceeded, match=r"deadline of 0\.2s"):
        await asyncio.wait_for(run(spec, fake_profile), 120)  # a guard, not a figure


@pytest.mark.parametrize(("call_timeout", "raised"), [(None, "deadline"), (0.05, "Timeout")])
async def test_a_call_cut_by_the_run_deadline_raises_the_run_deadline(
    fake_model, fake_profile, call_timeout, raised
):
    """The call's own timer and the run's deadline timer end together; whichever the event loop fires
    first, a call cut by the run's deadline is the run's error, and a call cut by its own (shorter)
    timeout is a Timeout. Here no run timer exists, so only the call's timer can fire."""
    import litellm

    from composite_cli.calls import CallRequest, complete
    from composite_cli.engine.runtime import RunContext

    fake_model.default.delay = 600
    host = RunContext(
        run_id="r",
        mode="t",
        profile=fake_profile,
        request=RunRequest(messages=USER),
        params={},
        max_calls=10,
        deadline_s=0.2,
        subscribers=[],
    )
    request = CallRequest(alias="f", messages=USER, name="a", parent_id=None, timeout=call_timeout)
    expected = RunLimitExceeded if raised == "deadline" else litellm.Timeout
    with pytest.raises(expected) as caught:
        await asyncio.wait_for(complete(host, request), 120)  # a guard, not a figure
    if raised == "deadline":
        assert caught.value.limit == "deadline"
        assert str(caught.value) == "run passed its deadline of 0.2s in mode 't'"
    else:
        assert "call 'a' to openai/fake-model timed out" in str(caught.value)


async def test_failed_run_reports_error_in_run_finished(fake_model, fake_profile):
    import litellm

    fake_model.add(error=litellm.AuthenticationError("bad key sk-abcdefgh12345678", "openai", "m"))
    spec = mode("name: t\nsteps:\n  - {id: a, kind: call, model: f}\n")
    events: list = []
    with pytest.raises(litellm.AuthenticationError):
        await run_mode(spec, RunRequest(messages=USER), profile=fake_profile, subscribers=[events.append])
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "error"
    assert "AuthenticationError" in finished.error
    assert "sk-abcdefgh12345678" not in finished.error


async def test_cancelled_run_is_marked_cancelled(fake_model, fake_profile):
    fake_model.default.delay = 5
    spec = mode("name: t\nsteps:\n  - {id: a, kind: call, model: f}\n")
    events: list = []
    task = asyncio.create_task(
        run_mode(spec, RunRequest(messages=USER), profile=fake_profile, subscribers=[events.append])
    )
    for _ in range(10_000):  # until the call is in flight (each turn lets the run go on)
        if any(isinstance(e, CallStarted) for e in events):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(events[-1], RunFinished) and events[-1].status == "cancelled"
    calls = [e.record for e in events if isinstance(e, CallFinished)]
    assert calls and calls[0].status == "cancelled"


async def test_unknown_alias_fails_before_any_call(fake_model):
    spec = mode("name: t\nsteps:\n  - {id: a, kind: call, model: strong}\n")
    profile = Profile("narrow", {"fast": {"model": "openai/x"}})
    with pytest.raises(UnknownAliasError, match="no model for alias 'strong'"):
        await run(spec, profile)
    assert fake_model.requests == []


async def test_bad_requests_are_refused_before_any_call(fake_model, fake_profile):
    spec = mode("name: t\nparams: {n: 2}\nsteps:\n  - {id: a, kind: call, model: f}\n")
    with pytest.raises(BadRequest, match="no parameter 'bogus'"):
        await run(spec, fake_profile, params={"bogus": 1})
    with pytest.raises(BadRequest, match="must be int"):
        await run(spec, fake_profile, params={"n": "two"})
    with pytest.raises(BadRequest, match="non-empty"):
        await run(spec, fake_profile, messages=[])
    with pytest.raises(BadRequest, match="role"):
        await run(spec, fake_profile, messages=[{"role": "wizard", "content": "x"}])
    assert fake_model.requests == []


async def test_usage_and_cost_are_summed_over_calls(fake_model):
    profile = Profile("priced", {"*": {"model": "openai/gpt-4o-mini"}})
    spec = ModeLibrary().load("moa")
    result, events = await run(spec, profile)
    records = [e.record for e in events if isinstance(e, CallFinished)]
    assert result.calls == len(records) == 4
    assert result.prompt_tokens == sum(r.prompt_tokens for r in records)
    assert result.completion_tokens == sum(r.completion_tokens for r in records)
    assert result.cost_usd == pytest.approx(sum(r.cost_usd for r in records))
    assert result.cost_usd > 0


async def test_unknown_price_is_none_not_zero(fake_model, fake_profile):
    spec = mode("name: t\nsteps:\n  - {id: a, kind: call, model: f}\n")
    result, events = await run(spec, fake_profile)
    record = next(e.record for e in events if isinstance(e, CallFinished))
    assert record.cost_usd is None
    assert result.cost_usd is None


async def test_metadata_tags_every_call_for_litellm_callbacks(fake_model, fake_profile):
    spec = ModeLibrary().load("moa")
    result, _ = await run(spec, fake_profile)
    for req in fake_model.requests:
        assert req["metadata"]["composite_run_id"] == result.run_id
        assert req["metadata"]["composite_mode"] == "moa-v1"


async def test_moa_middle_layer_shows_previous_answers_to_proposers(fake_model, fake_profile):
    spec = ModeLibrary().load("moa")
    fake_model.on("analyst", "first-round analyst")
    await run(spec, fake_profile, params={"extra_layers": 1})
    names = fake_model.names()
    assert names.count("analyst") == 2 and names[-1] == "answer"
    second = [r for r in fake_model.requests if r["metadata"]["composite_call"] == "analyst"][1]
    assert "first-round analyst" in second["messages"][0]["content"]


def test_profile_params_then_step_params(fake_profile):
    from composite_cli.calls import CallRequest, build_kwargs

    class Host:
        run_id = "r"
        profile = Profile("p", {"strong": {"model": "openai/x", "temperature": 0.2, "api_key": "k"}})

        def call_metadata(self):
            return {"composite_run_id": "r"}

    kwargs = build_kwargs(
        Host(),
        CallRequest(alias="strong", messages=USER, name="n", parent_id=None, params={"temperature": 0.9}),
    )
    assert kwargs["temperature"] == 0.9 and kwargs["api_key"] == "k" and kwargs["model"] == "openai/x"


def test_tool_call_arguments_nest_at_most_as_deep_as_any_json_from_outside():
    """One limit for JSON from outside (composite_cli/jsonvalues.py): 100 levels, the same as an
    eval line, a YAML file and a request body."""
    from composite_cli.engine.conversation import validate_messages

    def history(levels: int) -> list[dict]:
        arguments = '{"a": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        return [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]

    validate_messages(history(100))
    with pytest.raises(
        BadRequest, match=r"messages\[1\]\.tool_calls\[0\]\.function\.arguments are nested more than 100"
    ):
        validate_messages(history(101))
