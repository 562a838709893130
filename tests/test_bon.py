"""bon-v1 and the `best_of` step kind on the scripted fake model: early stop at the threshold, the
best answer when none reaches it, unscored judge replies, scorer functions by dotted path under
--allow-code (refused without it; one that raises or returns a non-number fails in one line),
the scores in the trace, no candidate streamed or shown the client's tools."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from composite_cli.config import Profile
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.engine.steps.best_of import judge_score
from composite_cli.errors import ModeValidationError, StepFailed
from composite_cli.events import CallFinished, StepFinished, TokenDelta

USER = [{"role": "user", "content": "Write a haiku about rain."}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


async def run(spec: Any, profile: Profile, **kw: Any) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    request = RunRequest(messages=kw.pop("messages", USER), **kw)
    result = await run_mode(spec, request, profile=profile, subscribers=[events.append])
    return result, events


def scored(scores: dict[int, str]) -> Any:
    """Candidate i answers `draft i`; its judge replies `scores[i]`."""

    def script(name: str, messages: list[dict[str, Any]]) -> str | None:
        if name.startswith("candidate"):
            return f"draft {name[len('candidate') :]}"
        if name.startswith("score"):
            return scores[int(name[len("score") :])]
        return None

    return script


def best_of_step(events: list[Any]) -> StepFinished:
    return next(
        e for e in events if isinstance(e, StepFinished) and e.scratchpad and "scores:" in e.scratchpad
    )


def test_judge_score_reads_the_last_score_line_within_range():
    assert judge_score("Fine.\nSCORE: 7") == 7
    assert judge_score("score=8.5 ... SCORE: 6") == 6
    assert judge_score("SCORE: 11") is None
    assert judge_score("I'd give it a seven") is None


async def test_bon_stops_early_at_the_threshold_and_records_the_scores(fake_model, fake_profile):
    fake_model.script(scored({1: "Weak.\nSCORE: 5", 2: "Lovely.\nSCORE: 9", 3: "SCORE: 10"}))
    spec = ModeLibrary().load("bon")
    result, events = await run(spec, fake_profile, stream=True, tools=TOOLS)
    assert result.text == "draft 2"
    assert fake_model.names() == ["candidate1", "score1", "candidate2", "score2"]
    step = best_of_step(events)
    assert "candidate 2 reached the threshold 8: stopped after 2 of 4" in (step.scratchpad or "")
    assert "scores: [5, 9]; picked candidate 2 (score 9)" in (step.scratchpad or "")
    assert result.notes["best_of"] == {"scores": [5.0, 9.0], "picked": 2, "threshold": 8.0}
    # the candidates are internal calls: none streamed, none given the client's tools; the
    # chosen answer is sent whole
    assert not any(r.get("stream") or "tools" in r for r in fake_model.requests)
    assert [e.text for e in events if isinstance(e, TokenDelta)] == ["draft 2"]
    # the judge sees the candidate as the assistant's reply, then the rubric
    judge = fake_model.request("score2")["messages"]
    assert (
        judge[-2] == {"role": "assistant", "content": "draft 2"} and "SCORE: <number>" in judge[-1]["content"]
    )
    records = [e.record for e in events if isinstance(e, CallFinished)]
    assert result.calls == len(records) == 4
    assert result.prompt_tokens == sum(r.prompt_tokens for r in records)


async def test_bon_returns_the_best_when_none_reaches_the_threshold(fake_model, fake_profile):
    fake_model.script(scored({1: "SCORE: 3", 2: "no score here", 3: "SCORE: 6", 4: "SCORE: 4"}))
    spec = ModeLibrary().load("bon")
    result, events = await run(spec, fake_profile)
    assert result.text == "draft 3" and result.calls == 8
    pad = best_of_step(events).scratchpad or ""
    assert "candidate 2: unscored (the judge's reply has no SCORE: line within 0-10)" in pad
    assert "scores: [3, -, 6, 4]; picked candidate 3 (score 6)" in pad


async def test_bon_with_no_scored_candidate_says_so(fake_model, fake_profile):
    fake_model.script(scored({1: "meh", 2: "meh"}))
    spec = ModeLibrary().load("bon")
    result, events = await run(spec, fake_profile, params={"samples": 2})
    assert result.text == "draft 1"
    assert "no candidate could be scored: the answer is candidate 1" in (
        best_of_step(events).scratchpad or ""
    )


SCORER_MODE = """
name: t
steps:
  - id: best
    kind: best_of
    model: m
    n: 3
    threshold: 0.5
    scorer: {scorer}
"""


@pytest.fixture
def scorer_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "bon_scorers_for_test.py").write_text(
        textwrap.dedent(
            """
            def longest(answer, question):
                return len(answer) / 100

            def broken(answer, question):
                raise RuntimeError("no model loaded")

            def wordy(answer, question):
                return "high"
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "bon_scorers_for_test"


async def test_bon_scorer_function_under_allow_code(fake_model, fake_profile, scorer_module):
    fake_model.on("candidate1", "short").on("candidate2", "x" * 60).on("candidate3", "never asked")
    spec = parse_mode(SCORER_MODE.format(scorer=f"{scorer_module}:longest"), allow_code=[scorer_module])
    result, events = await run(spec, fake_profile)
    assert result.text == "x" * 60 and fake_model.names() == ["candidate1", "candidate2"]
    assert "candidate 2: score 0.6 (scorer)" in (best_of_step(events).scratchpad or "")


def test_bon_scorer_needs_allow_code_and_nothing_is_imported(scorer_module, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, scorer_module, raising=False)  # imported by an earlier test
    with pytest.raises(ModeValidationError) as info:
        parse_mode(SCORER_MODE.format(scorer=f"{scorer_module}:longest"))
    (error,) = info.value.errors
    assert error.field == "steps[0].scorer" and "allow" in str(error)
    assert scorer_module not in sys.modules


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        ("broken", "step 'best': scorer bon_scorers_for_test:broken raised RuntimeError: no model loaded"),
        (
            "wordy",
            "step 'best': scorer bon_scorers_for_test:wordy returned 'high' for candidate 1, not a number",
        ),
    ],
)
async def test_a_failing_scorer_fails_the_step_in_one_line(
    fake_model, fake_profile, scorer_module, fn, message
):
    spec = parse_mode(SCORER_MODE.format(scorer=f"{scorer_module}:{fn}"), allow_code=[scorer_module])
    with pytest.raises(StepFailed) as info:
        await run(spec, fake_profile)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ("judge_model: j\n    scorer: a.b:c", "steps[0].scorer: give a scorer or a judge_model, not both"),
        ("n: 2", "steps[0].judge_model: a best_of step needs judge_model or scorer"),
        ("judge_model: j\n    threshold: 12", "steps[0].threshold: a judge scores 0 to 10, got 12"),
        ("scorer: not-a-path", "steps[0].scorer: 'not-a-path' is not package.module:function"),
        ("scorer: a.b:c\n    rubric: be nice", "steps[0].rubric: a rubric is for judge_model, not a scorer"),
        ("judge_model: j\n    n: 1000", "steps[0].n: must be at most 128"),
    ],
)
def test_best_of_problems_are_one_line_each(fields: str, problem: str):
    text = f"name: t\nsteps:\n  - id: best\n    kind: best_of\n    model: m\n    {fields}\n"
    with pytest.raises(ModeValidationError) as info:
        parse_mode(text, allow_code=["a"])
    assert any(problem in str(e) for e in info.value.errors), [str(e) for e in info.value.errors]
