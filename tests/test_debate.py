"""debate-v1 and the `debate` step kind on the scripted fake model: each expert reads the others'
latest answers (not its own, anonymous, shuffled and recorded) after its own answer, for `rounds`
rounds; a judge or a vote decides; each round is a child step in the trace; failures per expert;
streaming and the client's tools reach the final step only."""

from __future__ import annotations

import re
from typing import Any

import pytest

from composite_cli.config import Profile
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.errors import FanoutFailed, ModeValidationError
from composite_cli.events import CallFinished, StepFinished, StepStarted, TokenDelta

USER = [{"role": "user", "content": "What is 17 * 3?"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
EXPERTS = ("analyst", "solver", "skeptic")


async def run(spec: Any, profile: Profile, **kw: Any) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    request = RunRequest(messages=kw.pop("messages", USER), **kw)
    result = await run_mode(spec, request, profile=profile, subscribers=[events.append])
    return result, events


def rounds_script(name: str, messages: list[dict[str, Any]]) -> str | None:
    """Each expert's answer names it and its round (read from the revision prompt)."""
    if name not in EXPERTS:
        return None
    found = re.search(r"Round (\d+) of a discussion", str(messages[-1]["content"]))
    return f"{name} says 51 (round {found.group(1) if found else 0})"


async def test_each_expert_reads_the_others_latest_answers_anonymously(fake_model, fake_profile):
    fake_model.script(rounds_script)
    fake_model.on("verdict", "51")
    spec = ModeLibrary().load("debate")
    result, events = await run(spec, fake_profile, stream=True, tools=TOOLS)
    assert result.text == "51"
    assert result.calls == 3 * 3 + 1  # three experts, first answers and two rounds, then the judge
    revisions = [r for r in fake_model.requests if r["metadata"]["composite_call"] == "solver"]
    assert len(revisions) == 3
    last = revisions[2]["messages"]
    assert last[-2] == {"role": "assistant", "content": "solver says 51 (round 1)"}  # its own, latest
    prompt = last[-1]["content"]
    assert "Round 2 of a discussion" in prompt
    assert "analyst says 51 (round 1)" in prompt and "skeptic says 51 (round 1)" in prompt
    assert "solver says" not in prompt  # not its own answer among the others'
    assert "(analyst)" not in prompt and "(skeptic)" not in prompt  # anonymous
    # the judge sees the last round's answers
    judge = fake_model.request("verdict")["messages"][0]["content"]
    assert all(f"{e} says 51 (round 2)" in judge for e in EXPERTS)
    # only the final step streams and gets the client's tools
    for req in fake_model.requests:
        final = req["metadata"]["composite_call"] == "verdict"
        assert ("tools" in req) is final and bool(req.get("stream")) is final
    verdict_step = next(e for e in events if isinstance(e, StepStarted) and e.name == "verdict")
    assert all(d.step_id == verdict_step.step_id for d in events if isinstance(d, TokenDelta))
    records = [e.record for e in events if isinstance(e, CallFinished)]
    assert result.prompt_tokens == sum(r.prompt_tokens for r in records)


async def test_the_timeline_has_a_child_step_per_round_holding_its_calls(fake_model, fake_profile):
    fake_model.script(rounds_script)
    spec = ModeLibrary().load("debate")
    _, events = await run(spec, fake_profile, params={"rounds": 1})
    started = {e.step_id: e for e in events if isinstance(e, StepStarted)}
    debate = next(e for e in started.values() if e.kind == "debate")
    rounds = [e for e in started.values() if e.parent_id == debate.step_id]
    assert [(e.kind, e.name) for e in rounds] == [("round", "round0"), ("round", "round1")]
    calls = [e for e in events if isinstance(e, CallFinished)]
    for r in rounds:
        assert sorted(c.record.name for c in calls if c.record.parent_id == r.step_id) == sorted(EXPERTS)
    # who read what, recorded in the round's scratchpad
    round1 = next(e for e in events if isinstance(e, StepFinished) and e.step_id == rounds[1].step_id)
    assert round1.status == "ok"
    assert "solver reads: 1=" in (round1.scratchpad or "") and "solver reads: 1=solver" not in (
        round1.scratchpad or ""
    )


async def test_decide_by_vote_calls_no_judge(fake_model, fake_profile):
    fake_model.script(lambda name, messages: "51" if name in EXPERTS else None)
    spec = ModeLibrary().load("debate")
    result, _ = await run(spec, fake_profile, params={"decide": "vote", "rounds": 1}, stream=True)
    assert result.text == "51" and result.calls == 6
    assert "verdict" not in fake_model.names()


async def test_a_failed_revision_keeps_the_last_answer_until_too_few_revise(fake_model, fake_profile):
    from conftest import Reply

    failures = {"skeptic": 0}

    def script(name: str, messages: list[dict[str, Any]]) -> Any:
        if name == "skeptic" and any(m["role"] == "assistant" for m in messages):
            failures["skeptic"] += 1
            return Reply(error=RuntimeError("model overloaded"))
        return rounds_script(name, messages)

    fake_model.script(script)
    spec = ModeLibrary().load("debate")
    result, events = await run(spec, fake_profile, params={"rounds": 1})
    assert result.status == "ok"
    judge = fake_model.request("verdict")["messages"][0]["content"]
    assert "skeptic says 51 (round 0)" in judge and "solver says 51 (round 1)" in judge
    pads = " ".join(e.scratchpad or "" for e in events if isinstance(e, StepFinished))
    assert "expert skeptic failed to revise" in pads and "keeps its last answer" in pads

    fake_model.requests.clear()
    with pytest.raises(FanoutFailed):
        await run(spec, fake_profile, params={"rounds": 1, "min_success": 3})


async def test_no_rounds_is_a_plain_fanout_then_the_decision(fake_model, fake_profile):
    spec = ModeLibrary().load("debate")
    result, _ = await run(spec, fake_profile, params={"rounds": 0})
    assert result.calls == 4


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ("rounds: 9", "steps[1].rounds: must be at most 8"),
        ("references: a", "steps[1].references: a debate's experts read each other"),
        ("revise: '{{ nope }}'", "steps[1].revise: unknown template variable 'nope'"),
        ("revise: 'Revise your answer.'", "steps[1].revise: the others' answers are never shown"),
    ],
)
def test_debate_problems_are_one_line_each(fields: str, problem: str):
    text = (
        "name: t\nsteps:\n  - {id: a, kind: call, model: m}\n"
        f"  - id: d\n    kind: debate\n    model: m\n    n: 2\n    {fields}\n"
    )
    with pytest.raises(ModeValidationError) as info:
        parse_mode(text)
    assert any(problem in str(e) for e in info.value.errors), [str(e) for e in info.value.errors]


async def test_a_run_limit_in_one_revision_stops_the_others(fake_model, fake_profile):
    """max_calls reached by one revision ends the run; a slower revision of the same round is
    cancelled with it, not left calling after the run finished."""
    from conftest import Reply

    from composite_cli.errors import RunLimitExceeded
    from composite_cli.events import RunFinished

    def script(name: str, messages: list[dict[str, Any]]) -> Any:
        if name == "x" and any(m["role"] == "assistant" for m in messages):
            return Reply("slow revision", delay=5)
        return None

    fake_model.script(script)
    spec = parse_mode(
        "name: t\nlimits: {max_calls: 4}\nsteps:\n  - id: d\n    kind: debate\n    rounds: 1\n"
        "    experts: [{name: x, model: m}, {name: y, model: m}, {name: z, model: m}]\n"
    )
    events: list[Any] = []
    with pytest.raises(RunLimitExceeded):
        await run_mode(spec, RunRequest(messages=USER), profile=fake_profile, subscribers=[events.append])
    assert isinstance(events[-1], RunFinished) and events[-1].status == "error"
    slow = [e.record for e in events if isinstance(e, CallFinished) and e.record.name == "x"]
    assert [r.status for r in slow] == ["ok", "cancelled"]  # the slow revision ended with the run


SLOW = 60.0  # never waited for: the round ends as soon as its quorum and grace allow
PANEL = (
    "name: t\nsteps:\n  - id: d\n    kind: debate\n    rounds: {rounds}\n    quorum: 2\n    grace: {grace}\n"
    "    experts: [{{name: analyst, model: m}}, {{name: solver, model: m}}, {{name: skeptic, model: m}}]\n"
)


def round_pad(events: list[Any], name: str) -> str:
    started = next(e for e in events if isinstance(e, StepStarted) and e.name == name)
    return next(
        e.scratchpad or "" for e in events if isinstance(e, StepFinished) and e.step_id == started.step_id
    )


async def test_a_slow_revision_is_cancelled_after_the_rounds_quorum_and_grace(fake_model, fake_profile):
    """Round 1 waits as round 0 does: two revisions in, then the grace; the skeptic's late revision
    is cancelled, and it keeps its round-0 answer, which round 2 reads."""
    from conftest import Reply

    def script(name: str, messages: list[dict[str, Any]]) -> Any:
        if name == "skeptic" and "Round 1 of a discussion" in str(messages[-1]["content"]):
            return Reply("skeptic says 50 (round 1)", delay=SLOW)
        return rounds_script(name, messages)

    fake_model.script(script)
    result, events = await run(parse_mode(PANEL.format(rounds=2, grace=0.01)), fake_profile)
    assert result.status == "ok"
    calls = [(e.record.name, e.record.status) for e in events if isinstance(e, CallFinished)]
    assert [status for name, status in calls if name == "skeptic"] == ["ok", "cancelled", "ok"]
    assert [status for name, status in calls if name != "skeptic"] == ["ok"] * 6
    pad = round_pad(events, "round1")
    assert "quorum 2 answered; cancelled after a grace of 0.01s: skeptic" in pad
    assert "expert skeptic was cancelled (late); keeps its last answer" in pad
    assert "cancelled" not in round_pad(events, "round2")
    # round 2: the others read the skeptic's round-0 answer; the skeptic revises it
    solver = [r for r in fake_model.requests if r["metadata"]["composite_call"] == "solver"][2]
    assert "skeptic says 51 (round 0)" in solver["messages"][-1]["content"]
    skeptic = [r for r in fake_model.requests if r["metadata"]["composite_call"] == "skeptic"][2]
    assert skeptic["messages"][-2] == {"role": "assistant", "content": "skeptic says 51 (round 0)"}
    assert "skeptic says 51 (round 2)" in result.text


async def test_a_revision_in_time_for_the_grace_counts(fake_model, fake_profile):
    from conftest import Reply

    def script(name: str, messages: list[dict[str, Any]]) -> Any:
        if name == "skeptic" and "Round 1 of a discussion" in str(messages[-1]["content"]):
            return Reply("skeptic says 51 (round 1)", delay=0.01)
        return rounds_script(name, messages)

    fake_model.script(script)
    _, events = await run(parse_mode(PANEL.format(rounds=1, grace=SLOW)), fake_profile)
    assert {e.record.status for e in events if isinstance(e, CallFinished)} == {"ok"}
    assert "cancelled" not in round_pad(events, "round1")


async def test_a_run_limit_during_a_rounds_grace_stops_the_late_revisions(fake_model, fake_profile):
    """The quorum is in, the round waits out its grace; a run limit raised by one revision then
    ends the run at once and cancels the slow one (a TaskGroup's property, kept by the wait)."""
    from conftest import Reply

    from composite_cli.errors import RunLimitExceeded

    def script(name: str, messages: list[dict[str, Any]]) -> Any:
        if "Round 1 of a discussion" in str(messages[-1]["content"]):
            if name == "solver":
                return Reply(error=RunLimitExceeded("deadline", "run passed its deadline"), delay=0.01)
            if name == "skeptic":  # within the grace: only a wait that stops at the limit cancels it
                return Reply("late", delay=SLOW / 2)
        return rounds_script(name, messages)

    fake_model.script(script)
    text = PANEL.format(rounds=1, grace=SLOW).replace("quorum: 2", "quorum: 1")
    events: list[Any] = []
    with pytest.raises(RunLimitExceeded):
        await run_mode(
            parse_mode(text), RunRequest(messages=USER), profile=fake_profile, subscribers=[events.append]
        )
    statuses = {e.record.name: e.record.status for e in events if isinstance(e, CallFinished)}
    assert statuses == {"analyst": "ok", "solver": "error", "skeptic": "cancelled"}


async def test_the_step_timeout_cancels_a_rounds_revisions(fake_model, fake_profile):
    """The step's hard `timeout` still bounds every round: a revision still running when it
    passes is cancelled and recorded so, not left calling after the step failed."""
    from conftest import Reply

    from composite_cli.errors import StepTimeout

    def script(name: str, messages: list[dict[str, Any]]) -> Any:
        if name == "skeptic" and "Round 1 of a discussion" in str(messages[-1]["content"]):
            return Reply("late", delay=SLOW)
        return rounds_script(name, messages)

    fake_model.script(script)
    text = PANEL.format(rounds=1, grace=0).replace("    quorum: 2\n", "    timeout: 3\n")  # round 0 fits
    events: list[Any] = []
    with pytest.raises(StepTimeout):
        await run_mode(
            parse_mode(text), RunRequest(messages=USER), profile=fake_profile, subscribers=[events.append]
        )
    skeptic = [e.record.status for e in events if isinstance(e, CallFinished) and e.record.name == "skeptic"]
    assert skeptic == ["ok", "cancelled"]
