"""The step lifecycle (engine/lifecycle.py): every way out of a step maps to one status, each
StepStarted gets exactly one StepFinished, totals link to the parent; events are frozen and
keyword-only, and a finished call's record never changes after it was emitted."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from conftest import Reply

from composite_cli.calls import CallRequest
from composite_cli.config import Profile, Settings
from composite_cli.engine.executor import StepRuntime, run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.lifecycle import OpenStep, StepEndedEarly
from composite_cli.engine.runtime import RunContext, RunRequest, Scope
from composite_cli.engine.spec import parse_mode
from composite_cli.engine.tool_loop import call_with_tools
from composite_cli.engine.values import TextValue
from composite_cli.errors import StepFailed, StepTimeout
from composite_cli.events import (
    STEP_STATUSES,
    CallDelta,
    CallFinished,
    CallRecord,
    CallStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    TokenDelta,
)
from composite_cli.runner import Runner
from composite_cli.tools.base import InternalTool
from composite_cli.worker.protocol import ProtocolError, decode, encode, event_from, event_message

PROFILE = Profile("test", {"*": {"model": "openai/fake-model"}})


def context(events: list) -> RunContext:
    return RunContext(
        run_id="r1",
        mode="m",
        profile=PROFILE,
        request=RunRequest(messages=[{"role": "user", "content": "hi"}]),
        params={},
        max_calls=10,
        deadline_s=600,
        subscribers=[events.append],
    )


def call_record(parent_id: str, tokens: tuple[int, int] = (3, 4)) -> CallRecord:
    return CallRecord(
        id="c1",
        run_id="r1",
        parent_id=parent_id,
        name="ask",
        alias="a",
        model="openai/fake-model",
        started_at=0.0,
        request={"messages": [{"role": "user", "content": "hi"}]},
        status="ok",
        message={"role": "assistant", "content": "hello"},
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        cost_usd=0.5,
    )


def finished_pairs(events: list) -> dict[str, StepFinished]:
    """Every StepStarted has exactly one StepFinished (and none without a start)."""
    started = [e.step_id for e in events if isinstance(e, StepStarted)]
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert sorted(started) == sorted(e.step_id for e in finished)
    assert len(set(started)) == len(started)
    return {e.step_id: e for e in finished}


async def _ok(step):
    step.done(TextValue("fine"))


async def _partial(step):
    step.done(TextValue("so far", partial=True, stopped_by="max_rounds (2)"))


async def _nothing(step):
    pass


async def _skip(step):
    step.skip("not available here")


async def _fail(step):
    step.fail("tool said no")


async def _raise(step):
    raise StepFailed("boom")


async def _early(step):
    raise StepEndedEarly("client tool calls", "calls for the client")


async def _slow(step):
    await asyncio.sleep(600)  # only the step's timeout ends it


@pytest.mark.parametrize(
    ("body", "status", "output", "error", "raises"),
    [
        (_ok, "ok", "fine", None, None),
        (_nothing, "ok", None, None, None),
        (_partial, "partial", "so far", None, None),
        (_skip, "skipped", None, "not available here", None),
        (_fail, "error", None, "tool said no", None),
        (_raise, "error", None, "StepFailed: boom", StepFailed),
        (_early, "ok", "calls for the client", None, StepEndedEarly),
        (_slow, "timeout", None, "StepTimeout: step 'work' timed out after 0.05s", StepTimeout),
    ],
)
async def test_each_way_out_has_its_status(body, status, output, error, raises):
    events: list = []
    ctx = context(events)

    async def run() -> None:
        async with OpenStep(
            ctx, kind="call", name="work", parent_id=None, depth=0, parent_totals=ctx.totals, timeout=0.05
        ) as step:
            await body(step)

    if raises is None:
        await run()
    else:
        with pytest.raises(raises):
            await asyncio.wait_for(run(), 120)  # a guard, not a figure
    (end,) = finished_pairs(events).values()
    assert (end.status, end.output, end.error) == (status, output, error)
    assert end.status in STEP_STATUSES


async def test_a_cancelled_step_is_cancelled_and_the_cancel_goes_on():
    events: list = []
    ctx = context(events)
    entered = asyncio.Event()

    async def run() -> None:
        async with OpenStep(ctx, kind="call", name="work", parent_id=None, depth=0, parent_totals=ctx.totals):
            entered.set()
            await asyncio.sleep(600)

    task = asyncio.create_task(run())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (end,) = finished_pairs(events).values()
    assert (end.status, end.error) == ("cancelled", "cancelled")


async def test_child_totals_link_to_the_parent_and_are_reported():
    events: list = []
    ctx = context(events)
    async with OpenStep(
        ctx, kind="loop", name="outer", parent_id=None, depth=0, parent_totals=ctx.totals
    ) as outer:
        async with OpenStep(
            ctx, kind="call", name="inner", parent_id=outer.step_id, depth=1, parent_totals=outer.totals
        ) as inner:
            ctx.record_call(call_record(inner.step_id))
    ends = finished_pairs(events)
    for step in (inner, outer):
        end = ends[step.step_id]
        assert (end.prompt_tokens, end.completion_tokens, end.cost_usd) == (3, 4, 0.5)
    assert (ctx.totals.calls, ctx.totals.prompt_tokens) == (1, 3)
    started = {e.step_id: e for e in events if isinstance(e, StepStarted)}
    assert started[inner.step_id].parent_id == outer.step_id and started[inner.step_id].depth == 1


async def test_a_step_without_calls_has_no_cost():
    events: list = []
    ctx = context(events)
    async with OpenStep(ctx, kind="tool", name="t", parent_id=None, depth=0, parent_totals=ctx.totals):
        pass
    (end,) = finished_pairs(events).values()
    assert (end.prompt_tokens, end.completion_tokens, end.cost_usd) == (0, 0, None)


# -- through the executor -----------------------------------------------------------------------------


async def test_a_step_timeout_is_recorded_as_timeout(fake_model):
    fake_model.add("late", delay=600)
    spec = parse_mode("name: t\nsteps:\n  - {id: slow, kind: call, model: f, timeout: 0.1}\n")
    events: list = []
    with pytest.raises(StepTimeout, match=r"'slow' timed out after 0\.1s"):
        await asyncio.wait_for(
            run_mode(
                spec,
                RunRequest(messages=[{"role": "user", "content": "hi"}]),
                profile=PROFILE,
                subscribers=[events.append],
            ),
            120,
        )
    ends = finished_pairs(events)
    assert [e.status for e in ends.values()] == ["timeout"]
    assert next(e for e in events if isinstance(e, RunFinished)).status == "error"


async def test_an_emitted_call_summary_never_changes(fake_model):
    """The tool loop drops tool calls an intermediate step may not make: the trace and every
    subscriber keep the call as the model answered it."""
    call = {"id": "call_x", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    fake_model.on("analyst", "let me check", tool_calls=[call]).on("answer", "Sunny.")
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_x", "content": "18C"},
    ]
    events: list = []
    request = RunRequest(messages=history, tools=[weather])
    await run_mode(ModeLibrary().load("moa"), request, profile=PROFILE, subscribers=[events.append])
    analyst = next(e.record for e in events if isinstance(e, CallFinished) and e.record.name == "analyst")
    assert analyst.message["tool_calls"][0]["id"] == "call_x" and analyst.finish_reason == "tool_calls"


def test_a_call_record_has_one_frozen_definition():
    """Was: calls.CallRecord (mutable, with a dead `exception`) and events.CallSummary repeated
    one field list."""
    from composite_cli import calls, events

    assert calls.CallRecord is events.CallRecord and not hasattr(events, "CallSummary")
    assert "exception" not in {f.name for f in dataclasses.fields(CallRecord)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        call_record("s1").status = "error"  # type: ignore[misc]


def test_an_emitted_call_record_is_the_events_own_copy():
    events: list = []
    ctx = context(events)
    record = call_record("s1")
    ctx.record_call(record)
    record.message["content"] = "changed"
    record.request["messages"].append({"role": "user", "content": "more"})
    emitted = next(e.record for e in events if isinstance(e, CallFinished))
    assert emitted.text == "hello" and len(emitted.request["messages"]) == 1
    assert emitted == dataclasses.replace(
        record, message={"role": "assistant", "content": "hello"}, request=call_record("s1").request
    )


async def test_tool_steps_time_out_fail_or_are_skipped_and_the_step_goes_on(fake_model):
    """A tool's own timeout is `timeout` (was `error`), a tool that raises is `error`, a tool the
    step did not declare is `skipped` (was `refused`); each goes back to the model."""

    async def slow(**_):
        await asyncio.sleep(600)  # only the tool timeout ends it

    async def broken(**_):
        raise ValueError("no")

    def tool_call(name: str, call_id: str) -> dict:
        return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}

    tools = [InternalTool(n, n, {"type": "object"}, fn) for n, fn in (("slow", slow), ("broken", broken))]
    calls = [tool_call("slow", "1"), tool_call("broken", "2"), tool_call("rogue", "3")]
    fake_model.on("ask", None, tool_calls=calls).on("ask", "done")
    events: list = []
    ctx = context(events)
    async with OpenStep(
        ctx, kind="call", name="s", parent_id=None, depth=0, parent_totals=ctx.totals
    ) as opened:
        rt = StepRuntime(ctx, None, Scope(), opened, False)
        request = CallRequest(
            alias="a", messages=[{"role": "user", "content": "go"}], name="ask", parent_id=None
        )
        record = await asyncio.wait_for(
            call_with_tools(
                rt, request, internal=tools, client_allowed=False, max_rounds=2, tool_timeout=0.05
            ),
            120,  # a guard, not a figure
        )
    assert record.text == "done"
    ends = finished_pairs(events)
    started = {e.name: e.step_id for e in events if isinstance(e, StepStarted)}
    assert {name: ends[step_id].status for name, step_id in started.items()} == {
        "s": "ok",
        "slow": "timeout",
        "broken": "error",
        "rogue": "skipped",
    }
    assert "not available" in (ends[started["rogue"]].error or "")
    results = [m["content"] for m in fake_model.requests[-1]["messages"] if m["role"] == "tool"]
    assert results[0].startswith("Error: tool slow timed out") and results[2].startswith(
        "Error: tool 'rogue'"
    )


# -- the RLM ------------------------------------------------------------------------------------------


async def test_a_cancelled_rlm_query_child_is_cancelled_in_the_trace(fake_model, tmp_path):
    """Was: the child was recorded `error` while the executor recorded the cancel as `cancelled`;
    the REPL block waiting for it stayed `running`."""
    child_called = asyncio.Event()

    def root(name, messages):
        if name.startswith("root d2"):
            child_called.set()
            return Reply("never seen", delay=600)  # only the cancel ends it
        if name.startswith("root"):
            return "```repl\nprint(rlm_query('how many?', context[:3000]))\n```"
        return None

    fake_model.script(root)
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    events: list = []
    request = RunRequest(messages=[{"role": "user", "content": "x" * 20_000}], params={"max_depth": 2})
    task = asyncio.create_task(runner.run("rlm-v1", request, subscribers=[events.append]))
    await asyncio.wait_for(child_called.wait(), 120)  # a guard, not a figure
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 120)
    runner.flush()
    ends = finished_pairs(events)
    run_id = next(e.run_id for e in events if isinstance(e, RunStarted))
    steps = {s["id"]: s for s in runner.store.run_steps(run_id)}
    child = next(e for e in events if isinstance(e, StepStarted) and e.name == "rlm_query")
    assert ends[child.step_id].status == "cancelled"
    assert steps[child.step_id]["status"] == "cancelled"
    assert steps[child.parent_id]["kind"] == "repl" and steps[child.parent_id]["status"] == "cancelled"
    assert not [s for s in steps.values() if s["status"] == "running"]
    assert {e.status for e in ends.values()} == {"cancelled"}
    runner.close()


# -- events -----------------------------------------------------------------------------------------


def examples() -> list:
    summary = call_record("s1")
    return [
        RunStarted(run_id="r", mode="m", source="cli", profile="p", input="hi", started_at=1.0),
        StepStarted(run_id="r", step_id="s", parent_id=None, kind="call", name="n", started_at=1.0, depth=0),
        StepFinished(run_id="r", step_id="s", status="ok", latency_ms=2.0, output="x"),
        CallStarted(run_id="r", call_id="c", parent_id="s", name="n", alias="a", model="m", started_at=1.0),
        CallDelta(run_id="r", call_id="c", text="t"),
        CallFinished(record=summary),
        TokenDelta(run_id="r", step_id="s", text="t"),
        RunFinished(
            run_id="r",
            status="ok",
            latency_ms=3.0,
            calls=1,
            prompt_tokens=1,
            completion_tokens=2,
            cost_usd=None,
        ),
    ]


@pytest.mark.parametrize("event", examples(), ids=lambda e: type(e).__name__)
def test_events_are_frozen_and_keyword_only(event):
    values = [getattr(event, f.name) for f in dataclasses.fields(event)]
    with pytest.raises(TypeError):
        type(event)(*values)
    name = dataclasses.fields(event)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, name, None)
    assert not hasattr(event, "__dict__")  # slots: no attribute can be added either


@pytest.mark.parametrize("event", examples(), ids=lambda e: type(e).__name__)
def test_events_cross_the_worker_protocol_unchanged(event):
    message = decode(encode(event_message(event)))
    assert event_from(json.loads(json.dumps(message))) == event


@pytest.mark.parametrize(
    "data",
    [{"run_id": "r"}, {"run_id": "r", "call_id": "c", "text": "t", "extra": 1}, {"record": "x"}],
)
def test_a_malformed_event_from_the_worker_is_a_protocol_error(data):
    name = "CallFinished" if "record" in data else "CallDelta"
    with pytest.raises(ProtocolError, match=f"malformed {name} event from the worker"):
        event_from({"type": "event", "event": name, "data": data})
