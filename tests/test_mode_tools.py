"""A request's `tools` never silently ignored (issue 15's "tools passed to the final step only"):
a mode whose answer is not made by a call offered the client's tools (vote-v1, bon-v1: one of
their samples; rlm-v1) refuses a request with tools before any model call, with one line naming
`tools`, through the Runner (so `eval`, the provider and `serve` alike); LiteLLM's model map says
such a mode does not support function calling; `modes list`/`show` say which modes take tools."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import FakeModel, Reply
from typer.testing import CliRunner

import composite_cli
from composite_cli.cli.main import app
from composite_cli.config import Profile, Settings
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.errors import BadParameter
from composite_cli.runner import Runner
from composite_cli.traces.reader import TraceReader
from composite_cli.traces.store import TraceStore

ASK = [{"role": "user", "content": "What is 6 times 7?"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
PRICED = Profile("priced", {"*": {"model": "openai/gpt-4o-mini"}})
NO_TOOLS = {"vote-v1", "bon-v1", "rlm-v1"}
VOTE_LINE = (
    "mode vote-v1 answers with one of its samples, which do not see the client's tools; "
    "use a mode whose final step takes tools, e.g. moa-v1 or self-moa-v1"
)


@pytest.mark.parametrize("name", ModeLibrary().names())
def test_shipped_modes_say_whether_they_take_the_clients_tools(name: str) -> None:
    assert ModeLibrary().load(name).takes_client_tools() is (name not in NO_TOOLS)


def test_rlm_says_why_it_refuses_the_clients_tools() -> None:
    assert ModeLibrary().load("rlm-v1").client_tools_refusal() == (
        "mode rlm-v1 answers with what its root model's code computes in a sandboxed REPL; the "
        "client's tools are not functions in that REPL, and no model of the RLM is offered them; "
        "use a mode whose final step takes tools, e.g. moa-v1 or self-moa-v1"
    )


def test_debate_takes_tools_with_a_judge_and_not_with_a_vote() -> None:
    spec = ModeLibrary().load("debate-v1")
    assert spec.takes_client_tools({"decide": "judge"})
    refusal = spec.client_tools_refusal({"decide": "vote"})
    assert refusal is not None and refusal.startswith("mode debate-v1 answers with one of its samples")


def mode(steps: str, params: str = "") -> str:
    return f"name: m\n{params}steps:\n{steps}"


FANOUT = "  - {id: s, kind: fanout, model: fast, n: 3}\n"


@pytest.mark.parametrize(
    ("steps", "takes"),
    [
        ("  - {id: a, kind: call, model: strong}\n", True),
        (FANOUT + "  - {id: a, kind: synthesize, from: s, model: strong}\n", True),
        (FANOUT + "  - {id: a, kind: vote, from: s}\n", False),
        (FANOUT + "  - {id: a, kind: vote, from: s, method: judge, model: judge}\n", False),
        (FANOUT + "  - {id: a, kind: judge, from: s, model: judge}\n", False),
        ("  - {id: a, kind: best_of, model: strong, judge_model: judge}\n", False),
        ("  - {id: a, kind: rlm, model: root}\n", False),
        (FANOUT, False),  # the samples themselves are the answer
        # a vote first, then a call that answers: the call gets the tools
        (FANOUT + "  - {id: v, kind: vote, from: s}\n  - {id: a, kind: call, model: strong}\n", True),
        # a non-final step marked client_tools may hand the client's calls back
        (
            "  - {id: d, kind: call, model: strong, client_tools: true}\n"
            "  - {id: a, kind: best_of, model: strong, judge_model: judge}\n",
            True,
        ),
        # if: either branch may answer
        (
            FANOUT + "  - id: f\n    kind: if\n    when: s\n    then:\n      - {id: v, kind: vote, from: s}\n"
            "    else:\n      - {id: c, kind: call, model: strong}\n",
            True,
        ),
        (
            FANOUT
            + "  - id: f\n    kind: if\n    when: s\n    then:\n      - {id: v, kind: vote, from: s}\n",
            False,
        ),
        # a loop answers with its last step, or with an `output` that is not it (no final call)
        ("  - id: l\n    kind: loop\n    steps:\n      - {id: c, kind: call, model: strong}\n", True),
        (
            "  - id: l\n    kind: loop\n    output: c\n    steps:\n      - {id: c, kind: call, model: strong}\n"
            "      - {id: r, kind: reflect, draft: c, model: judge}\n",
            False,
        ),
    ],
)
def test_whether_a_mode_takes_tools_follows_its_answering_step(steps: str, takes: bool) -> None:
    assert parse_mode(mode(steps)).takes_client_tools() is takes


def test_a_switch_takes_tools_when_its_chosen_case_does() -> None:
    spec = parse_mode(
        mode(
            FANOUT + "  - id: w\n    kind: switch\n    param: how\n    cases:\n"
            "      write: [{id: a, kind: synthesize, from: s, model: strong}]\n"
            "      vote: [{id: v, kind: vote, from: s}]\n",
            "params: {how: write}\n",
        )
    )
    assert spec.takes_client_tools() and spec.takes_client_tools({"how": "write"})
    assert not spec.takes_client_tools({"how": "vote"})


# -- the refusal, before any model call ---------------------------------------------------------


@pytest.mark.parametrize("name", ["vote-v1", "bon-v1"])
async def test_runner_refuses_tools_to_a_mode_that_cannot_use_them(
    name: str, fake_model: FakeModel, tmp_path: Path
) -> None:
    runner = Runner(Settings(profile=PRICED, db_path=tmp_path / "t.db"))
    try:
        with pytest.raises(BadParameter) as exc:
            await runner.run(name, RunRequest(messages=ASK, tools=[WEATHER]))
        assert exc.value.param == "tools"
        assert str(exc.value).startswith(f"mode {name} answers with ")
        assert "e.g. moa-v1" in str(exc.value)
        assert fake_model.requests == []  # refused before any model call
        # tool_choice "none" asks for no tool call: nothing is dropped, the run goes on
        fake_model.default = Reply("Answer: 42\nSCORE: 9")
        result = await runner.run(name, RunRequest(messages=ASK, tools=[WEATHER], tool_choice="none"))
        assert result.text.startswith("Answer: 42")
        assert not any("tools" in r and r.get("tool_choice") != "none" for r in fake_model.requests)
    finally:
        runner.close()


async def test_runner_refuses_per_request_params(fake_model: FakeModel, tmp_path: Path) -> None:
    runner = Runner(Settings(profile=PRICED, db_path=tmp_path / "t.db"))
    try:
        request = RunRequest(messages=ASK, tools=[WEATHER], params={"decide": "vote"})
        with pytest.raises(BadParameter) as exc:
            await runner.run("debate-v1", request)
        assert exc.value.param == "tools" and fake_model.requests == []
    finally:
        runner.close()


async def test_a_mode_that_takes_tools_still_gets_them(fake_model: FakeModel, tmp_path: Path) -> None:
    runner = Runner(Settings(profile=PRICED, db_path=tmp_path / "t.db"))
    try:
        fake_model.default = Reply("42")
        await runner.run("self-moa-v1", RunRequest(messages=ASK, tools=[WEATHER]))
        names = [r["metadata"]["composite_call"] for r in fake_model.requests if r.get("tools")]
        assert names == ["answer"]
    finally:
        runner.close()


# -- front ends ---------------------------------------------------------------------------------


def test_provider_raises_bad_request_naming_tools(fake_model: FakeModel, tmp_path: Path) -> None:
    composite_cli.register(settings=Settings(profile=PRICED, db_path=tmp_path / "t.db"))
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    with pytest.raises(litellm.BadRequestError) as exc:
        litellm.completion(model="composite/vote-v1", messages=ASK, tools=[WEATHER])
    assert VOTE_LINE in str(exc.value)
    assert fake_model.requests == []


def test_litellm_model_map_says_which_modes_take_tools(tmp_path: Path) -> None:
    composite_cli.register(settings=Settings(profile=PRICED, db_path=tmp_path / "t.db"))
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    assert litellm.supports_function_calling("composite/vote-v1") is False
    assert litellm.supports_function_calling("composite/bon-v1") is False
    assert litellm.supports_function_calling("composite/moa-v1") is True
    assert litellm.supports_function_calling("composite/direct") is True


FAKE_CONFIG = {"profile": "fake", "profiles": {"fake": {"*": {"model": "openai/gpt-4o-mini"}}}}


def test_eval_records_the_refusal_as_the_cases_error(fake_model: FakeModel, isolated_home: Path) -> None:
    (isolated_home / "composite.yaml").write_text(yaml.safe_dump(FAKE_CONFIG), encoding="utf-8")
    fake_model.default = Reply("Answer: 42")
    case = {"id": "q", "input": "6 times 7?", "expected": 42, "scorer": "numeric", "tools": [WEATHER]}
    (isolated_home / "e.jsonl").write_text(json.dumps(case) + "\n")
    argv = ["eval", "e.jsonl", "-m", "direct,vote-v1", "--json", "-q", "--db", "t.db"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    data = json.loads(result.stdout)
    modes = {m["mode"]: m for m in data["modes"]}
    assert modes["direct"]["score"] == 1.0
    assert modes["vote-v1"]["errors"] == 1
    store = TraceStore(isolated_home / "t.db")
    try:
        _, rows = TraceReader(store).eval_run_with_results(data["eval_run"]["id"])
    finally:
        store.close()
    errors = [r["error"] for r in rows if r["mode"] == "vote-v1"]
    assert len(errors) == 1 and VOTE_LINE in errors[0]


def test_modes_list_and_show_say_whether_a_mode_takes_tools() -> None:
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(app, ["modes", "list", "--json"]).stdout)}
    assert rows["vote-v1"]["client_tools"] is False and rows["moa-v1"]["client_tools"] is True
    text = CliRunner().invoke(app, ["modes", "list"]).stdout
    vote = next(line for line in text.splitlines() if line.lstrip().startswith("vote-v1"))
    moa = next(line for line in text.splitlines() if line.lstrip().startswith("moa-v1"))
    assert "  no tools  " in vote and "  tools     " in moa
    shown = json.loads(CliRunner().invoke(app, ["modes", "show", "bon", "--json"]).stdout)
    assert shown["client_tools"] is False
    text = CliRunner().invoke(app, ["modes", "show", "vote"]).stdout
    assert f"client tools: refused: {VOTE_LINE}" in text
    assert (
        "client tools: passed to the final step" in CliRunner().invoke(app, ["modes", "show", "moa"]).stdout
    )


def test_serve_answers_400_naming_tools(tmp_path: Path) -> None:
    from test_serve_e2e import MASTER, serve_on_mock

    mock = {"model": "openai/gpt-4o-mini", "mock_response": "Answer: 42"}
    with serve_on_mock(tmp_path, ["vote", "direct"], mock, name="vote") as server:
        headers = {"Authorization": f"Bearer {MASTER}"}
        body = {"model": "vote", "messages": ASK, "tools": [WEATHER]}
        refused = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error.get("param") == "tools", error
        assert "answers with one of its samples" in error["message"]
        body = {"model": "direct", "messages": ASK, "tools": [WEATHER]}
        done = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert done.status_code == 200, done.text
