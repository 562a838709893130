"""fusion-v1 and the `judge` and `switch` step kinds, on the scripted fake model (the one place
LiteLLM is called): the judge's JSON analysis (valid, invalid then valid, invalid twice), presets,
quorum and grace with a slow panel member, streaming and tools of the final step only, summed
usage; and the three judged modes (fusion-v1, bon-v1, debate-v1) end to end through `chat`,
`eval`, the LiteLLM provider and `composite serve`."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.config import Profile, Settings
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.engine.steps.judge import InvalidAnalysis, parse_analysis
from composite_cli.errors import BadParameter, ModeValidationError
from composite_cli.events import CallFinished, StepFinished, StepStarted, TokenDelta

USER = [{"role": "user", "content": "Is a tomato a fruit?"}]
ANALYSIS = {
    "consensus": ["botanically a fruit"],
    "contradictions": ["1 says vegetable in cooking, 2 does not mention it"],
    "unique_points": ["3: legally a vegetable in the US (1893)"],
    "blind_spots": [],
}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def profile_by_alias() -> Profile:
    """Each alias its own model, so a request's model says which alias it used."""
    return Profile(
        "aliases",
        {
            "strong": {"model": "openai/strong-model"},
            "fast": {"model": "openai/fast-model"},
            "judge": {"model": "openai/judge-model"},
            "*": {"model": "openai/other-model"},
        },
    )


async def run(spec: Any, profile: Profile, **kw: Any) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    request = RunRequest(messages=kw.pop("messages", USER), **kw)
    result = await run_mode(spec, request, profile=profile, subscribers=[events.append])
    return result, events


def finished(events: list[Any], name: str) -> StepFinished:
    started = next(e for e in events if isinstance(e, StepStarted) and e.name == name)
    return next(e for e in events if isinstance(e, StepFinished) and e.step_id == started.step_id)


def panel_and_judge(judge_replies: list[str]) -> Any:
    """A script: the panel's samples answer by number, the judge gives `judge_replies` in order."""
    replies = list(judge_replies)

    def script(name: str, messages: list[dict[str, Any]]) -> str | None:
        if name.startswith("sample"):
            return f"answer from {name}"
        if name.endswith("analysis") or name.endswith("analysis_retry"):
            return replies.pop(0)
        return None

    return script


# -- the judge's analysis ----------------------------------------------------------------------


def test_parse_analysis_accepts_a_fenced_object_and_names_each_problem():
    assert parse_analysis("```json\n" + json.dumps(ANALYSIS) + "\n```") == ANALYSIS
    problems = {
        "not json at all": "not JSON",
        "[1, 2]": "expected a JSON object, got a list",
        '{"consensus": []}': "missing key 'contradictions', 'unique_points', 'blind_spots'",
        json.dumps({**ANALYSIS, "verdict": "x"}): "unknown key 'verdict'",
        json.dumps({**ANALYSIS, "consensus": "yes"}): "'consensus' must be a list of strings, got a string",
        json.dumps({**ANALYSIS, "blind_spots": [{"a": 1}]}): "blind_spots[0] must be a string, got an object",
        "[" * 5000 + "]" * 5000: "JSON nested too deeply",
        "": "the reply is empty",
    }
    for text, problem in problems.items():
        with pytest.raises(InvalidAnalysis, match=problem.replace("[", r"\[").replace("]", r"\]")):
            parse_analysis(text)


async def test_fusion_valid_analysis_reaches_the_writer_and_the_trace(fake_model):
    fake_model.script(panel_and_judge([json.dumps(ANALYSIS)]))
    fake_model.on("answer", "Botanically yes; in the kitchen it is a vegetable.")
    spec = ModeLibrary().load("fusion")
    result, events = await run(spec, profile_by_alias(), stream=True, tools=TOOLS)
    assert result.text == "Botanically yes; in the kitchen it is a vegetable."
    assert (
        fake_model.names().count("quality_analysis") == 1
        and "quality_analysis_retry" not in fake_model.names()
    )
    # the preset `quality`: the panel samples `strong`, the judge is `judge`, the writer `strong`
    models = {r["metadata"]["composite_call"]: r["model"] for r in fake_model.requests}
    assert models == {
        "sample1": "openai/strong-model",
        "sample2": "openai/strong-model",
        "sample3": "openai/strong-model",
        "quality_analysis": "openai/judge-model",
        "answer": "openai/strong-model",
    }
    judge_prompt = fake_model.request("quality_analysis")["messages"][-1]["content"]
    assert all(f"answer from sample{i}" in judge_prompt for i in (1, 2, 3))
    assert "sample1" not in judge_prompt.replace("answer from sample1", "")  # anonymous
    writer = fake_model.request("answer")["messages"][0]["content"]
    assert '"consensus"' in writer and "botanically a fruit" in writer and "answer from sample2" in writer
    # the analysis is the judge step's scratchpad, readable
    judge = finished(events, "quality_analysis")
    assert judge.status == "ok"
    assert "consensus:\n  - botanically a fruit" in (judge.scratchpad or "")
    assert "blind spots:\n  (none)" in (judge.scratchpad or "")
    # only the final step streams and sees the client's tools
    answer_step = next(e for e in events if isinstance(e, StepStarted) and e.name == "answer")
    deltas = [e for e in events if isinstance(e, TokenDelta)]
    assert deltas and all(d.step_id == answer_step.step_id for d in deltas)
    for req in fake_model.requests:
        final = req["metadata"]["composite_call"] == "answer"
        assert ("tools" in req) is final and bool(req.get("stream")) is final
    # usage is summed over every call
    records = [e.record for e in events if isinstance(e, CallFinished)]
    assert result.calls == len(records) == 5
    assert result.prompt_tokens == sum(r.prompt_tokens for r in records)
    assert result.completion_tokens == sum(r.completion_tokens for r in records)


async def test_fusion_invalid_analysis_is_retried_once_with_the_problem(fake_model):
    fake_model.script(panel_and_judge(["Sure! Here is my analysis: they agree.", json.dumps(ANALYSIS)]))
    spec = ModeLibrary().load("fusion")
    result, events = await run(spec, profile_by_alias())
    assert fake_model.names().count("quality_analysis") == 1
    retry = fake_model.request("quality_analysis_retry")["messages"]
    assert retry[-2] == {"role": "assistant", "content": "Sure! Here is my analysis: they agree."}
    assert "not a valid analysis: not JSON" in retry[-1]["content"]
    assert "candidate answers" in retry[-3]["content"]  # the original prompt, before its reply
    judge = finished(events, "quality_analysis")
    assert judge.status == "ok"
    assert "attempt 1: invalid analysis (not JSON" in (judge.scratchpad or "")
    assert "analysis (valid JSON, attempt 2)" in (judge.scratchpad or "")
    assert '"consensus"' in fake_model.request("answer")["messages"][0]["content"]
    assert result.status == "ok" and result.calls == 6


async def test_fusion_analysis_invalid_twice_is_partial_and_the_writer_gets_the_raw_text(fake_model):
    fake_model.script(panel_and_judge(["no json", '{"consensus": "all agree"}']))
    spec = ModeLibrary().load("fusion")
    result, events = await run(spec, profile_by_alias())
    judge = finished(events, "quality_analysis")
    assert judge.status == "partial"
    assert "attempt 2: invalid analysis (missing key 'contradictions'" in (judge.scratchpad or "")
    assert "the next step gets the judge's raw reply" in (judge.scratchpad or "")
    assert '{"consensus": "all agree"}' in fake_model.request("answer")["messages"][0]["content"]
    assert result.status == "ok"  # the answer itself is whole; the trace says the review was not
    assert result.calls == 6


async def test_fusion_budget_preset_and_a_preset_that_names_no_case(fake_model):
    fake_model.script(panel_and_judge([json.dumps(ANALYSIS)]))
    spec = ModeLibrary().load("fusion")
    await run(
        spec, profile_by_alias(), params={"preset": "budget", "panel": 2, "min_success": 1, "quorum": 1}
    )
    models = {r["metadata"]["composite_call"]: r["model"] for r in fake_model.requests}
    assert models == {
        "sample1": "openai/fast-model",
        "sample2": "openai/fast-model",
        "budget_analysis": "openai/fast-model",
        "answer": "openai/strong-model",
    }
    fake_model.requests.clear()
    with pytest.raises(
        BadParameter, match=r"parameter 'preset' must be 'quality', 'budget' or 'mixed', got 'cheap'"
    ):
        await run(spec, profile_by_alias(), params={"preset": "cheap"})
    assert fake_model.requests == []  # refused before any model call


async def test_fusion_mixed_preset_asks_different_models(fake_model):
    fake_model.script(panel_and_judge([json.dumps(ANALYSIS)]))
    spec = ModeLibrary().load("fusion")
    result, _ = await run(spec, profile_by_alias(), params={"preset": "mixed"})
    models = {r["metadata"]["composite_call"]: r["model"] for r in fake_model.requests}
    assert models["strong"] == "openai/strong-model" and models["fast"] == "openai/fast-model"
    assert models["judge"] == "openai/judge-model" and models["mixed_analysis"] == "openai/judge-model"
    assert result.calls == 5


async def test_fusion_quorum_and_grace_do_not_wait_for_a_slow_panel_member(fake_model):
    def script(name: str, messages: list[dict[str, Any]]) -> Any:
        from conftest import Reply

        if name == "sample3":
            return Reply("too late", delay=30)
        return panel_and_judge([json.dumps(ANALYSIS)])(name, messages) if name != "answer" else None

    fake_model.script(script)
    spec = ModeLibrary().load("fusion")
    result, events = await run(spec, profile_by_alias(), params={"quorum": 2, "grace": 0.05})
    assert result.status == "ok"
    panel = finished(events, "quality_panel")
    assert panel.status == "ok" and "sample3" in (panel.scratchpad or "")
    late = [e.record for e in events if isinstance(e, CallFinished) and e.record.name == "sample3"]
    assert [r.status for r in late] == ["cancelled"]
    judge_prompt = fake_model.request("quality_analysis")["messages"][-1]["content"]
    assert "too late" not in judge_prompt and judge_prompt.count("answer from sample") == 2


# -- validation: one line naming file, line and field --------------------------------------------


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ("  - {id: j, kind: judge, model: judge}\n", "steps[0].from: is required"),
        (
            "  - {id: a, kind: call, model: m}\n  - {id: j, kind: judge, from: a, model: judge, shuffle: 3}\n",
            "steps[1].shuffle: must be true or false",
        ),
        (
            "  - id: s\n    kind: switch\n    param: nope\n    cases: {x: [{id: a, kind: call, model: m}]}\n",
            "steps[0].param: unknown parameter 'nope' (declared: preset)",
        ),
        (
            "  - id: s\n    kind: switch\n    param: preset\n    cases: {x: [{id: a, kind: call, model: m}]}\n",
            "steps[0].param: parameter 'preset' defaults to 'quality', which is not a case ('x')",
        ),
        (
            "  - {id: s, kind: switch, param: preset, cases: [1]}\n",
            "steps[0].cases: must be a mapping of value to steps",
        ),
    ],
)
def test_judge_and_switch_problems_are_one_line_each(steps: str, problem: str):
    with pytest.raises(ModeValidationError) as info:
        parse_mode("name: t\nparams: {preset: quality}\nsteps:\n" + steps)
    assert any(problem in str(e) for e in info.value.errors), [str(e) for e in info.value.errors]


# -- the three judged modes end to end -----------------------------------------------------------

JUDGED = ["fusion-v1", "bon-v1", "debate-v1"]
KINDS = {
    "fusion-v1": ["switch", "switch", "synthesize"],
    "bon-v1": ["best_of"],
    "debate-v1": ["debate", "switch"],
}
FAKE_CONFIG = "profile: fake\nprofiles:\n  fake:\n    '*': {model: openai/gpt-4o-mini}\n"


def good_judge(name: str, messages: list[dict[str, Any]]) -> str | None:
    """Valid replies for every judge a judged mode calls; everything else is the default reply."""
    if name.endswith("analysis") or name.endswith("analysis_retry"):
        return json.dumps(ANALYSIS)
    if name.startswith("score"):
        return "Good.\nSCORE: 9"
    return None


@pytest.mark.parametrize("mode", JUDGED)
def test_chat_runs_each_judged_mode_with_a_readable_trace(mode: str, fake_model, isolated_home: Path):
    (isolated_home / "composite.yaml").write_text(FAKE_CONFIG, encoding="utf-8")
    fake_model.script(good_judge)
    result = CliRunner().invoke(app, ["chat", "-m", mode, "--json", "--trace", "Is a tomato a fruit?"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["choices"][0]["message"]["content"] == "fake answer"
    assert data["composite"]["mode"] == mode and data["composite"]["calls"] == len(fake_model.requests)
    assert data["composite"]["cost_usd"] > 0  # priced model: cost summed over every call
    assert mode in result.stderr and "Traceback" not in result.output
    db = sqlite3.connect(isolated_home / "traces.db")
    statuses = dict(db.execute("select kind, status from steps where kind != 'llm'").fetchall())
    assert set(statuses.values()) == {"ok"}, statuses
    cost = db.execute("select sum(cost_usd) from steps where kind = 'llm'").fetchone()[0]
    assert data["composite"]["cost_usd"] == pytest.approx(cost)


def test_eval_compares_the_judged_modes(fake_model, isolated_home: Path):
    (isolated_home / "composite.yaml").write_text(FAKE_CONFIG, encoding="utf-8")
    fake_model.script(good_judge)
    fake_model.default.content = "The answer is 4"
    cases = [{"id": "sum", "input": "What is 2+2?", "expected": 4, "scorer": "numeric"}]
    (isolated_home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "e.jsonl", "--modes", ",".join(JUDGED), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [m["mode"] for m in report["modes"]] == JUDGED
    assert all(m["score"] == 1 for m in report["modes"])


@pytest.fixture
def provider(fake_model: Any, tmp_path: Path) -> Any:
    import composite_cli

    settings = Settings(
        profile=Profile("priced", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=tmp_path / "t.db"
    )
    handler = composite_cli.register(settings=settings)
    from composite_cli.litellm_loader import get_litellm

    return handler, get_litellm()


@pytest.mark.parametrize("mode", JUDGED)
def test_provider_streams_each_judged_mode_with_summed_usage(mode: str, provider: Any, fake_model, tmp_path):
    handler, litellm = provider
    fake_model.script(good_judge)
    fake_model.default.content = "the final answer"
    chunks = list(
        litellm.completion(
            model=f"composite/{mode}", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    handler.runner.flush()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "the final answer"
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    db = sqlite3.connect(tmp_path / "t.db")
    pt, ct = db.execute(
        "select sum(prompt_tokens), sum(completion_tokens) from steps where kind = 'llm'"
    ).fetchone()
    assert (usage.prompt_tokens, usage.completion_tokens) == (pt, ct)


def test_serve_answers_each_judged_mode(tmp_path: Path):
    """`composite serve` (a real subprocess) on LiteLLM mock responses, called with the openai SDK."""
    import openai

    sys.path.insert(0, str(Path(__file__).parent))
    from test_serve_e2e import MASTER, serve_on_mock, trace

    mock = {"model": "openai/gpt-4o-mini", "mock_response": "served answer", "mock_delay": 0.01}
    with serve_on_mock(tmp_path, JUDGED, mock, name="judged") as server:
        client = openai.OpenAI(api_key=MASTER, base_url=f"{server.url}/v1", timeout=60, max_retries=0)
        for mode in JUDGED:
            raw = client.chat.completions.with_raw_response.create(model=mode, messages=USER)
            completion = raw.parse()
            assert completion.choices[0].message.content == "served answer", mode
            run_id = raw.headers["x-composite-run-id"]
            body = trace(server, run_id)  # the server flushes its traces before answering this
            run = body["run"]
            assert (run["mode"], run["source"], run["status"]) == (mode, "serve", "ok")
            assert completion.usage.prompt_tokens == run["prompt_tokens"] > 0
            assert completion.usage.completion_tokens == run["completion_tokens"] > 0
            assert [s["kind"] for s in body["steps"]] == KINDS[mode]


def test_modes_list_counts_the_judges_retry():
    fusion = ModeLibrary().load("fusion").expected_calls()
    assert (fusion.least, fusion.most) == (5, 6)  # 3 samples, the analysis (+1 retry), the writer
    bon = ModeLibrary().load("bon").expected_calls({"samples": 3})
    assert (bon.least, bon.most) == (2, 6)
    debate = ModeLibrary().load("debate").expected_calls({"rounds": 1, "decide": "vote"})
    assert (debate.least, debate.most) == (6, 6)


async def test_the_analysis_shows_in_the_tui_and_datasette_step_views(fake_model, tmp_path: Path):
    from datasette.app import Datasette

    from composite_cli.runner import Runner
    from composite_cli.tui.widgets.step_detail import step_detail

    fake_model.script(panel_and_judge(["not json", json.dumps(ANALYSIS)]))
    db_path = tmp_path / "traces.db"
    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=db_path))
    result = await runner.run("fusion", RunRequest(messages=USER))
    runner.flush()
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    step = dict(
        db.execute("select * from steps where run_id = ? and kind = 'judge'", [result.run_id]).fetchone()
    )
    assert "consensus:\n  - botanically a fruit" in step["scratchpad"]
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(step_detail(step, {}))
    shown = console.export_text()
    assert "scratchpad" in shown and "attempt 1: invalid analysis" in shown and "botanically a fruit" in shown
    page = (await Datasette([str(db_path)]).client.get(f"/traces/steps/{step['id']}")).text
    assert "Scratchpad" in page and "consensus:" in page and "3: legally a vegetable in the US (1893)" in page
