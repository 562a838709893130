"""Fan-out quorum and grace (issue 15): a slow panel member does not hold the answer hostage; its
late call is cancelled and stays in the trace as `cancelled`. Candidates shown to a synthesizer or
judge are shuffled (seeded, recorded) and anonymous by default."""

from __future__ import annotations

import pytest

from composite_cli.engine.executor import run_mode
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.errors import ModeValidationError
from composite_cli.events import CallFinished, StepFinished, StepStarted

ASK = [{"role": "user", "content": "Capital of France?"}]
SLOW = 60.0  # never waited for: the tests end as soon as the quorum and grace allow

PANEL = """
name: panel
steps:
  - id: panel
    kind: fanout
    quorum: {quorum}
    grace: {grace}
    experts:
      - {{name: a, model: m}}
      - {{name: b, model: m}}
      - {{name: slow, model: m}}
  - id: answer
    kind: synthesize
    from: panel
    model: m
"""


async def run(text: str, fake_profile, **kw):
    events: list = []
    spec = parse_mode(text, "panel.yaml")
    result = await run_mode(
        spec, RunRequest(messages=ASK, **kw), profile=fake_profile, subscribers=[events.append]
    )
    return result, events


def scratchpad(events: list, name: str) -> str:
    started = next(e for e in events if isinstance(e, StepStarted) and e.name == name)
    finished = next(e for e in events if isinstance(e, StepFinished) and e.step_id == started.step_id)
    return finished.scratchpad or ""


def calls(events: list) -> dict[str, str]:
    return {e.record.name: e.record.status for e in events if isinstance(e, CallFinished)}


async def test_a_slow_member_is_cancelled_after_quorum_and_grace(fake_model, fake_profile):
    fake_model.on("a", "Paris").on("b", "Paris.").on("slow", "Lyon", delay=SLOW).on("answer", "Paris")
    result, events = await run(PANEL.format(quorum=2, grace=0.01), fake_profile)
    assert result.text == "Paris" and result.status == "ok"
    assert calls(events) == {"a": "ok", "b": "ok", "slow": "cancelled", "answer": "ok"}
    assert "quorum 2 answered; cancelled after a grace of 0.01s: slow" in scratchpad(events, "panel")
    # the synthesizer saw the two answers that came in, not the cancelled one
    shown = fake_model.request("answer")["messages"][0]["content"]
    assert "Lyon" not in shown and "1. Paris" in shown and "2. Paris" in shown


async def test_grace_lets_a_member_that_answers_in_time_count(fake_model, fake_profile):
    fake_model.on("a", "Paris").on("b", "Paris").on("slow", "Lyon", delay=0.01).on("answer", "x")
    _, events = await run(PANEL.format(quorum=2, grace=SLOW), fake_profile)
    assert calls(events)["slow"] == "ok"
    assert "Lyon" in fake_model.request("answer")["messages"][0]["content"]
    assert "cancelled" not in scratchpad(events, "panel")


async def test_without_quorum_every_member_is_waited_for(fake_model, fake_profile):
    fake_model.on("slow", "Lyon", delay=0.01)
    text = PANEL.replace("    quorum: {quorum}\n    grace: {grace}\n", "").format()
    _, events = await run(text, fake_profile)
    assert set(calls(events).values()) == {"ok"}


async def test_a_failed_member_does_not_count_toward_the_quorum(fake_model, fake_profile):
    fake_model.on("a", error=RuntimeError("boom")).on("b", "Paris").on("slow", "Lyon", delay=0.01)
    _, events = await run(PANEL.format(quorum=2, grace=0), fake_profile)
    # a failed: the quorum of 2 answers needs the slow one, which is waited for
    assert calls(events)["slow"] == "ok" and calls(events)["a"] == "error"


async def test_a_request_quorum_below_min_success_still_waits_for_min_success(fake_model, fake_profile):
    fake_model.on("a", "Paris").on("b", "Paris", delay=0.01).on("slow", "Lyon", delay=SLOW)
    text = "params: {q: 2}\n" + PANEL.format(quorum="$q", grace=0).replace(
        "    grace: 0\n", "    grace: 0\n    min_success: 2\n"
    )
    spec = parse_mode(text, "panel.yaml")
    events: list = []
    request = RunRequest(messages=ASK, params={"q": 1})
    await run_mode(spec, request, profile=fake_profile, subscribers=[events.append])
    assert calls(events)["b"] == "ok" and calls(events)["slow"] == "cancelled"


async def test_the_hard_timeout_still_bounds_the_step(fake_model, fake_profile):
    from composite_cli.errors import StepTimeout

    fake_model.on("a", "Paris").on("b", "Paris").on("slow", "Lyon", delay=SLOW)
    text = PANEL.format(quorum=3, grace=0).replace(
        "    kind: fanout\n", "    kind: fanout\n    timeout: 0.05\n"
    )
    with pytest.raises(StepTimeout):
        await run(text, fake_profile)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("quorum: 0", "panel.yaml:6: steps[0].quorum: must be at least 1"),
        ("quorum: 1\n    min_success: 2", "steps[0].quorum: is 1 but min_success is 2"),
        ("quorum: 4", "panel.yaml:6: steps[0].quorum: is 4 but the step makes only 3 calls"),
        ("grace: -1", "steps[0].grace: must be at least 0"),
        ("grace: soon", "steps[0].grace: must be a number"),
    ],
)
def test_bad_quorum_and_grace_are_one_line_errors(fields: str, message: str):
    text = PANEL.replace("    quorum: {quorum}\n    grace: {grace}\n", f"    {fields}\n").format()
    with pytest.raises(ModeValidationError) as caught:
        parse_mode(text, "panel.yaml")
    assert message in str(caught.value)


async def test_candidates_are_shuffled_with_a_recorded_seed_and_map(fake_model, fake_profile):
    for name in ("a", "b", "slow"):
        fake_model.on(name, f"answer of {name}")
    _, events = await run(PANEL.format(quorum=3, grace=0), fake_profile)
    pad = scratchpad(events, "answer")
    assert "candidates shuffled (seed " in pad
    mapping = pad.split("candidates shown as: ")[1].splitlines()[0]
    order = [part.split("=")[1] for part in mapping.split(", ")]
    assert sorted(order) == ["a", "b", "slow"]
    shown = fake_model.request("answer")["messages"][0]["content"]
    for n, name in enumerate(order, start=1):
        assert f"{n}. answer of {name}" in shown  # numbers only: no source names
    assert "(a)" not in shown
    # the same candidates in the same run settings give the same order (seeded, reproducible)
    fake_model.requests.clear()
    _, again = await run(PANEL.format(quorum=3, grace=0), fake_profile)
    assert scratchpad(again, "answer") == pad


async def test_some_seed_puts_the_candidates_out_of_order(fake_model, fake_profile):
    """Shuffling is real: over a few different candidate sets, some order is not a, b, slow."""
    orders = set()
    for i in range(8):
        for name in ("a", "b", "slow"):
            fake_model.on(name, f"{name} {i}")
        _, events = await run(PANEL.format(quorum=3, grace=0), fake_profile)
        orders.add(scratchpad(events, "answer").split("candidates shown as: ")[1].splitlines()[0])
        fake_model.by_name.clear()
    assert len(orders) > 1


async def test_shuffle_and_anonymize_can_be_turned_off(fake_model, fake_profile):
    for name in ("a", "b", "slow"):
        fake_model.on(name, f"answer of {name}")
    text = PANEL.format(quorum=3, grace=0) + "    shuffle: false\n    anonymize: false\n"
    _, events = await run(text, fake_profile)
    shown = fake_model.request("answer")["messages"][0]["content"]
    assert "1. (a) answer of a\n\n2. (b) answer of b\n\n3. (slow) answer of slow" in shown
    pad = scratchpad(events, "answer")
    assert "shuffled" not in pad and "candidates shown as: 1=a, 2=b, 3=slow" in pad


def test_shuffle_must_be_a_boolean():
    text = PANEL.format(quorum=3, grace=0) + "    shuffle: maybe\n"
    with pytest.raises(ModeValidationError, match=r"steps\[1\].shuffle: must be true or false"):
        parse_mode(text, "panel.yaml")


async def test_a_judge_vote_maps_its_pick_back_through_the_shuffle(fake_model, fake_profile):
    fake_model.on("a", "answer of a").on("b", "answer of b").on("slow", "answer of slow")
    text = PANEL.format(quorum=3, grace=0).replace("kind: synthesize", "kind: vote\n    method: judge")
    fake_model.on("answer", "2")
    result, events = await run(text, fake_profile)
    pad = scratchpad(events, "answer")
    second = pad.split("candidates shown as: ")[1].split(", ")[1].split("=")[1].splitlines()[0]
    assert result.text == f"answer of {second}"
    assert f"judge picked candidate 2 ({second})" in pad


async def test_a_run_limit_during_the_grace_cancels_the_rest_at_once(fake_model, fake_profile):
    """After the quorum, the wait for the rest still stops at a run limit one member raises: the
    member that would have answered within the grace is cancelled, not waited for."""
    from composite_cli.errors import RunLimitExceeded

    fake_model.on("a", "Paris").on(
        "b", error=RunLimitExceeded("deadline", "run passed its deadline"), delay=0.01
    )
    fake_model.on("slow", "Lyon", delay=SLOW / 2)
    events: list = []
    with pytest.raises(RunLimitExceeded):
        spec = parse_mode(PANEL.format(quorum=1, grace=SLOW), "panel.yaml")
        await run_mode(spec, RunRequest(messages=ASK), profile=fake_profile, subscribers=[events.append])
    assert calls(events) == {"a": "ok", "b": "error", "slow": "cancelled"}


async def test_a_member_handing_client_tool_calls_back_ends_the_fanout(fake_model, fake_profile):
    """A fan-out marked `client_tools: true`: a member's tool calls are the client's answer (the
    others are cancelled), not counted as that member's failure and lost."""
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    fake_model.on("a", None, tool_calls=[call]).on("b", "Paris").on("slow", "Lyon", delay=SLOW)
    text = PANEL.format(quorum=3, grace=0).replace(
        "    kind: fanout\n", "    kind: fanout\n    client_tools: true\n"
    )
    result, events = await run(text, fake_profile, tools=tools)
    assert result.finish_reason == "tool_calls"
    assert result.message["tool_calls"][0]["function"] == call["function"]
    statuses = calls(events)
    assert statuses["a"] == "ok" and statuses["slow"] == "cancelled" and "answer" not in statuses


async def test_members_that_all_hit_a_run_limit_leave_no_unretrieved_task_error(fake_model, fake_profile):
    """Members refused by the run's call limit at once (before any call): the first ends the step
    and every other member's error is retrieved (CI once logged "Task exception was never
    retrieved" for a moa-v1 fan-out over max_calls under `composite serve`)."""
    import asyncio
    import gc

    from composite_cli.errors import RunLimitExceeded

    fake_model.on("a", "Paris").on("b", "Paris").on("slow", "Lyon")
    text = "limits: {max_calls: 1}\n" + PANEL.format(quorum=3, grace=0)
    unretrieved: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(str(context.get("message"))))

    async def fails() -> str:
        try:
            await run_mode(parse_mode(text, "panel.yaml"), RunRequest(messages=ASK), profile=fake_profile)
        except RunLimitExceeded as exc:
            return type(exc).__name__  # the exception (and the frames it holds) go with this frame
        return "answered"

    try:
        assert await fails() == "RunLimitExceeded"
        for _ in range(3):
            await asyncio.sleep(0)
            gc.collect()  # a task whose exception nobody retrieved reports it when it is collected
    finally:
        loop.set_exception_handler(None)
    assert not [m for m in unretrieved if "never retrieved" in m], unretrieved
