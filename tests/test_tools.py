"""Tools end to end: client tools through every mode, the think tool, internal tools, bad histories."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import Reply

from composite_cli.config import Profile, Settings
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.engine.tool_loop import FINAL_ANSWER, FINAL_ANSWER_OR_TOOL
from composite_cli.errors import BadRequest, ModeValidationError, StepFailed
from composite_cli.events import CallFinished, StepFinished, StepStarted
from composite_cli.runner import Runner
from composite_cli.tools import load_tool
from composite_cli.tools.base import ToolError
from composite_cli.tools.calculator import calculate

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def weather_call(call_id: str = "call_w1") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }


def think_call(thought: str, call_id: str = "call_t1") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "think", "arguments": json.dumps({"thought": thought})},
    }


def second_turn(call: dict) -> list[dict]:
    return [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
    ]


async def run(mode, profile, **kw):
    events: list = []
    spec = mode if not isinstance(mode, str) else ModeLibrary().load(mode)
    result = await run_mode(spec, RunRequest(**kw), profile=profile, subscribers=[events.append])
    return result, events


# The step whose call the client's tools reach (and which may return client tool calls) per mode.
FINAL_CALL = {
    "direct": "answer",
    "moa-v1": "answer",
    "reflect-v1": "draft",
    "think-v1": "answer",
    "think-step-v1": "answer",
    "moa-reflect-v1": "draft",
}


@pytest.mark.parametrize("mode", sorted(FINAL_CALL))
async def test_two_turn_weather_loop_through_every_mode(mode, fake_model, fake_profile):
    gate = FINAL_CALL[mode]
    fake_model.on(gate, None, tool_calls=[weather_call()])
    first, _ = await run(mode, fake_profile, messages=ASK, tools=[WEATHER], tool_choice="auto")
    assert first.finish_reason == "tool_calls"
    assert first.message["tool_calls"] == [weather_call()]
    offered = [r for r in fake_model.requests if r.get("tools")]
    assert [r["metadata"]["composite_call"] for r in offered] == [gate]
    assert offered[0]["tools"][-1] == WEATHER

    # The client ran the tool and calls again with its result: the mode runs on the longer chat.
    fake_model.requests.clear()
    fake_model.by_name.clear()
    fake_model.default.content = "It is 18C and sunny in Paris. NO ISSUES"
    second, _ = await run(mode, fake_profile, messages=second_turn(weather_call()), tools=[WEATHER])
    assert second.finish_reason == "stop" and "18C" in second.text
    for req in fake_model.requests:
        sent = req["messages"]
        if req["metadata"]["composite_call"] == "condensed":
            continue  # declared `conversation: false`: it sees only its prompt
        # every step sees the tool call and its result as real messages
        assert any(m.get("tool_calls") == [weather_call()] for m in sent), req["metadata"]["composite_call"]
        assert any(m.get("role") == "tool" and m["content"] == "18C and sunny" for m in sent)
        if req["metadata"]["composite_call"] not in (gate, "answer", "rewrite"):
            # intermediate steps: tools declared (the history needs them) but disabled
            assert req.get("tool_choice") == "none", req["metadata"]["composite_call"]


async def test_intermediate_steps_get_no_tools_without_tool_history(fake_model, fake_profile):
    await run("moa", fake_profile, messages=ASK, tools=[WEATHER])
    for req in fake_model.requests:
        if req["metadata"]["composite_call"] != "answer":
            assert "tools" not in req and "tool_choice" not in req


async def test_an_intermediate_step_cannot_emit_client_tool_calls(fake_model, fake_profile):
    fake_model.on("analyst", "let me check", tool_calls=[weather_call("call_x")])
    fake_model.on("answer", "Sunny, probably.")
    result, events = await run("moa", fake_profile, messages=second_turn(weather_call()), tools=[WEATHER])
    assert result.text == "Sunny, probably." and result.finish_reason == "stop"
    finished = {e.step_id: e for e in events if isinstance(e, StepFinished)}
    proposals = next(e for e in events if isinstance(e, StepStarted) and e.name == "proposals")
    assert "ignored tool calls this step may not make" in (finished[proposals.step_id].scratchpad or "")
    content = fake_model.request("answer")["messages"][0]["content"]
    assert "let me check" in content


async def test_client_tool_choice_and_calls_are_passed_intact(fake_model, fake_profile):
    forced = {"type": "function", "function": {"name": "get_weather"}}
    fake_model.on("answer", None, tool_calls=[weather_call("call_abc"), weather_call("call_def")])
    result, _ = await run("direct", fake_profile, messages=ASK, tools=[WEATHER], tool_choice=forced)
    assert fake_model.request("answer")["tool_choice"] == forced
    assert [c["id"] for c in result.message["tool_calls"]] == ["call_abc", "call_def"]


# -- think-v1 ---------------------------------------------------------------------------------


async def test_think_calls_are_run_by_composite_recorded_and_hidden(fake_model, fake_profile, tmp_path):
    fake_model.on("answer", None, tool_calls=[think_call("The user wants Paris weather; I need the tool.")])
    fake_model.on("answer", "Let me look that up.", tool_calls=[weather_call()])
    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "t.db"))
    result = await runner.run("think-v1", RunRequest(messages=ASK, tools=[WEATHER]))
    assert result.message["tool_calls"] == [weather_call()]
    assert result.finish_reason == "tool_calls"
    first, second = fake_model.requests
    names = [t["function"]["name"] for t in first["tools"]]
    assert names == ["think", "get_weather"]
    # the think call was answered inside composite before the second call
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "think"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_t1",
        "content": "Thought recorded.",
    }
    runner.flush()
    steps = runner.store.run_steps(result.run_id)
    think = [s for s in steps if s["kind"] == "think"]
    assert len(think) == 1 and think[0]["scratchpad"] == "The user wants Paris weather; I need the tool."
    assert json.loads(think[0]["request_json"])["tool_call_id"] == "call_t1"
    runner.close()


async def test_mixed_think_and_client_calls_return_only_the_clients(fake_model, fake_profile):
    fake_model.on("answer", None, tool_calls=[think_call("check the city"), weather_call()])
    result, events = await run("think-v1", fake_profile, messages=ASK, tools=[WEATHER])
    assert result.message["tool_calls"] == [weather_call()]
    assert len(fake_model.requests) == 1
    assert any(isinstance(e, StepStarted) and e.kind == "think" for e in events)
    # the next request, with the client's result, is a valid conversation
    fake_model.by_name.clear()
    follow_up, _ = await run("think-v1", fake_profile, messages=second_turn(weather_call()), tools=[WEATHER])
    assert follow_up.finish_reason == "stop"


async def test_think_rounds_are_capped_then_the_model_is_asked_for_its_answer(fake_model, fake_profile):
    fake_model.on("answer", None, tool_calls=[think_call("again")])  # thinks until told to answer
    fake_model.script(
        lambda name, messages: "Paris: 18C and sunny." if FINAL_ANSWER in str(messages) else None
    )
    result, events = await run("think-v1", fake_profile, messages=ASK, params={"max_think_rounds": 2})
    thinks = [e for e in events if isinstance(e, StepStarted) and e.kind == "think"]
    assert len(thinks) == 2
    assert len(fake_model.requests) == 3
    last = fake_model.requests[-1]
    assert "tools" not in last  # the last call is offered no think tool...
    assert last["messages"][-1] == {"role": "user", "content": FINAL_ANSWER}  # ...and told to answer
    assert (result.text, result.finish_reason) == ("Paris: 18C and sunny.", "stop")


async def test_out_of_think_rounds_the_client_tools_stay_offered(fake_model, fake_profile):
    fake_model.on("answer", None, tool_calls=[think_call("again")])
    told = FINAL_ANSWER_OR_TOOL
    fake_model.script(
        lambda name, messages: Reply(None, tool_calls=[weather_call()]) if told in str(messages) else None
    )
    result, _ = await run(
        "think-v1", fake_profile, messages=ASK, tools=[WEATHER], params={"max_think_rounds": 1}
    )
    last = fake_model.requests[-1]
    assert [t["function"]["name"] for t in last["tools"]] == ["get_weather"]
    assert last["messages"][-1] == {"role": "user", "content": FINAL_ANSWER_OR_TOOL}
    assert result.finish_reason == "tool_calls" and result.message["tool_calls"] == [weather_call()]


async def test_a_model_that_never_answers_fails_the_step_instead_of_answering_nothing(
    fake_model, fake_profile
):
    fake_model.on("answer", None, tool_calls=[think_call("again")])  # even when think is not offered
    with pytest.raises(StepFailed, match="the model gave no answer"):
        await run("think-v1", fake_profile, messages=ASK, params={"max_think_rounds": 2})
    assert len(fake_model.requests) == 3  # two think rounds, one request for the answer


async def test_an_empty_answer_is_asked_again_once_then_fails(fake_model, fake_profile):
    fake_model.on("answer", "")
    fake_model.on("answer", "It is sunny.")
    result, events = await run("think-v1", fake_profile, messages=ASK)
    assert result.text == "It is sunny."
    second = fake_model.requests[1]
    assert "tools" not in second and second["messages"][-1]["content"] == FINAL_ANSWER
    notes = [e.scratchpad for e in events if isinstance(e, StepFinished) and e.scratchpad]
    assert any("empty answer" in n for n in notes)

    fake_model.by_name.clear()
    fake_model.on("answer", "   ")
    with pytest.raises(StepFailed, match="the model gave no answer"):
        await run("think-v1", fake_profile, messages=ASK)


async def test_think_guidance_lives_in_the_mode_file(fake_model, fake_profile):
    await run("think-v1", fake_profile, messages=ASK)
    system = fake_model.requests[0]["messages"][0]["content"]
    assert "after you get tool results" in system and "cannot be undone" in system


async def test_think_step_variant_writes_private_notes_after_tool_results(fake_model, fake_profile):
    fake_model.on("analysis", "Rule: answer in Celsius. Missing: nothing. Plan: answer.")
    fake_model.on("condensed", "- Celsius\n- answer now")
    fake_model.on("answer", "18C and sunny.")
    result, _ = await run(
        "think-step-v1", fake_profile, messages=second_turn(weather_call()), tools=[WEATHER]
    )
    assert fake_model.names() == ["analysis", "condensed", "answer"]
    assert "Rule: answer in Celsius" in fake_model.request("condensed")["messages"][-1]["content"]
    system = fake_model.request("answer")["messages"][0]
    assert system["role"] == "system" and "- Celsius" in system["content"]
    assert "Rule: answer in Celsius" not in result.text
    # without fresh tool results it is one call
    fake_model.requests.clear()
    await run("think-step-v1", fake_profile, messages=ASK)
    assert fake_model.names() == ["answer"]
    assert fake_model.requests[0]["messages"] == ASK


# -- internal tools for experts --------------------------------------------------------------------

CALC_MODE = """
name: t
steps:
  - id: solver
    kind: call
    model: m
    tools: [calculator]
    max_tool_rounds: 3
"""


def calc_call(expr: str, call_id: str = "c1") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "calculator", "arguments": json.dumps({"expression": expr})},
    }


async def test_internal_tool_loop_runs_the_calculator(fake_model, fake_profile):
    fake_model.on("solver", None, tool_calls=[calc_call("17 * 23")]).on("solver", "17 * 23 = 391")
    result, events = await run(
        parse_mode(CALC_MODE), fake_profile, messages=[{"role": "user", "content": "17*23?"}]
    )
    assert result.text == "17 * 23 = 391"
    assert fake_model.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "391"}
    tool_steps = [e for e in events if isinstance(e, StepStarted) and e.kind == "tool"]
    assert [s.name for s in tool_steps] == ["calculator"]
    done = next(e for e in events if isinstance(e, StepFinished) and e.step_id == tool_steps[0].step_id)
    assert done.status == "ok" and done.output == "391"


async def test_expert_internal_tools_are_never_sent_to_the_client(fake_model, fake_profile):
    spec = parse_mode(
        """
name: t
steps:
  - id: experts
    kind: fanout
    experts:
      - {name: mathy, model: m, tools: [calculator]}
      - {name: plain, model: m}
  - {id: answer, kind: synthesize, from: experts, model: m}
"""
    )
    fake_model.on("mathy", None, tool_calls=[calc_call("2**10")]).on("mathy", "1024")
    result, _ = await run(spec, fake_profile, messages=ASK, tools=[WEATHER])
    assert [t["function"]["name"] for t in fake_model.request("mathy")["tools"]] == ["calculator"]
    assert "tools" not in fake_model.request("plain")
    assert [t["function"]["name"] for t in fake_model.request("answer")["tools"]] == ["get_weather"]
    assert "calculator" not in json.dumps(result.message)


async def test_a_raising_tool_is_reported_to_the_model_and_the_run_goes_on(fake_model, fake_profile):
    fake_model.on("solver", None, tool_calls=[calc_call("1/0")]).on("solver", "cannot divide by zero")
    result, events = await run(parse_mode(CALC_MODE), fake_profile, messages=ASK)
    assert result.text == "cannot divide by zero"
    assert fake_model.requests[1]["messages"][-1]["content"] == "Error: division by zero"
    failed = [e for e in events if isinstance(e, StepFinished) and e.status == "error"]
    assert failed and failed[0].error == "division by zero"


async def test_an_undeclared_tool_is_refused_and_recorded_as_skipped(fake_model, fake_profile):
    rogue = {"id": "r1", "type": "function", "function": {"name": "delete_everything", "arguments": "{}"}}
    fake_model.on("solver", None, tool_calls=[rogue]).on("solver", "ok")
    result, events = await run(parse_mode(CALC_MODE), fake_profile, messages=ASK, tools=[WEATHER])
    assert result.text == "ok"
    refused = [e for e in events if isinstance(e, StepFinished) and e.status == "skipped"]
    assert len(refused) == 1 and "not available" in refused[0].error
    assert "not available" in fake_model.requests[1]["messages"][-1]["content"]


async def test_dotted_path_tools_load_with_a_schema(fake_model, fake_profile, tmp_path, monkeypatch):
    (tmp_path / "mytools.py").write_text(
        'def lookup(word: str, limit: int = 3) -> list:\n    """Look a word up.\n\n    More."""\n'
        "    return [word.upper()] * limit\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    tool = load_tool("mytools:lookup", ["mytools"])
    assert tool.name == "lookup" and tool.description == "Look a word up."
    assert tool.parameters == {
        "type": "object",
        "properties": {"word": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["word"],
    }
    spec = parse_mode(
        "name: t\nsteps:\n  - {id: s, kind: call, model: m, tools: ['mytools:lookup']}\n",
        allow_code=["mytools"],
    )
    call = {
        "id": "l1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"word": "rook", "limit": 2}'},
    }
    fake_model.on("s", None, tool_calls=[call]).on("s", "done")
    await run(spec, fake_profile, messages=ASK)
    assert fake_model.requests[1]["messages"][-1]["content"] == '["ROOK", "ROOK"]'


def test_unknown_tools_are_validation_errors():
    with pytest.raises(ModeValidationError, match=r"steps\[0\]\.tools\[0\]: unknown tool 'shell'"):
        parse_mode("name: t\nsteps:\n  - {id: s, kind: call, model: m, tools: [shell]}\n")
    with pytest.raises(ModeValidationError, match="cannot import 'no_such_module'"):
        parse_mode(
            "name: t\nsteps:\n  - {id: s, kind: call, model: m, tools: ['no_such_module:f']}\n",
            allow_code=["no_such_module"],
        )


TRAP_TOOLS = "import pathlib\npathlib.Path({marker!r}).write_text('imported')\ndef lookup(word: str) -> str:\n    return word\n"


@pytest.fixture
def trap_tools(tmp_path, monkeypatch):
    """A module `trap_tools` whose import (its top level) writes a marker file."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "trap_tools.py").write_text(TRAP_TOOLS.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "trap_tools", raising=False)
    return marker


TRAP_MODE = (
    "name: t\nsteps:\n  - id: s\n    kind: call\n    model: m\n    tools: [think, 'trap_tools:lookup']\n"
)


@pytest.mark.parametrize("allow", [[], ["trap"], ["trap_tools:other"], ["trap_tools.sub"]])
def test_a_mode_naming_code_is_refused_before_import(trap_tools, allow):
    with pytest.raises(ModeValidationError) as info:
        parse_mode(TRAP_MODE, "t.yaml", allow_code=allow)
    (error,) = info.value.errors
    assert (error.line, error.field) == (6, "steps[0].tools[1]")
    assert error.message.startswith("'trap_tools:lookup' names Python code")
    assert "--allow-code trap_tools" in error.message
    assert not trap_tools.exists() and "trap_tools" not in sys.modules


@pytest.mark.parametrize("allow", [["trap_tools"], ["trap_tools:lookup"]])
def test_a_mode_tool_in_the_allowance_loads(trap_tools, allow):
    spec = parse_mode(TRAP_MODE, "t.yaml", allow_code=allow)
    assert [t.name for t in spec.steps[0].settings.tools] == ["think", "lookup"] and trap_tools.exists()


def test_the_library_passes_the_allowance_from_settings(trap_tools, tmp_path):
    modes = tmp_path / "modes"
    modes.mkdir()
    (modes / "t.yaml").write_text(TRAP_MODE)
    settings = Settings(
        profile=Profile("p", {"*": {"model": "x"}}), db_path=tmp_path / "t.db", modes_path=(modes,)
    )
    with pytest.raises(ModeValidationError, match="names Python code"):
        ModeLibrary.from_settings(settings).load("t")
    assert not trap_tools.exists()
    allowed = settings.allowing_code(["trap_tools"])
    assert ModeLibrary.from_settings(allowed).load("t").steps[0].settings.tools[1].name == "lookup"
    assert Runner(allowed, trace=False).mode("t").name == "t"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("17 * 23", "391"),
        ("(2 + 3) ** 2", "25"),
        ("sqrt(16) + pi", "7.141592653589793"),
        ("7 // 2", "3"),
        ("-3 + abs(-5)", "2"),
        ("round(2.567, 2)", "2.57"),
        ("10 / 4", "2.5"),
    ],
)
def test_calculator(expression, expected):
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "unsupported"),
        ("9 ** 9 ** 9", "exponent too large"),
        ("1/0", "division by zero"),
        ("open('x')", "unsupported"),
        ("2 +", "not an arithmetic expression"),
        ("x" * 1001, "too long"),
        ("sqrt(-1)", "math error"),
    ],
)
def test_calculator_refuses_unsafe_or_bad_input(expression, message):
    with pytest.raises(ToolError, match=message):
        calculate(expression)


# -- malformed histories -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "tools", "tool_choice", "message"),
    [
        (
            [*ASK, {"role": "tool", "tool_call_id": "nope", "content": "x"}],
            None,
            None,
            "no earlier message called",
        ),
        (
            [
                *ASK,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                    ],
                },
            ],
            None,
            None,
            "must be a JSON object",
        ),
        (
            [
                *ASK,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
            ],
            None,
            None,
            "needs an id",
        ),
        (ASK, [{"type": "function", "function": {"name": "bad name!"}}], None, "must match"),
        (ASK, [WEATHER], {"type": "function", "function": {"name": "other"}}, "not in tools"),
        (ASK, [WEATHER], "sometimes", "tool_choice must be"),
        (ASK, [{"type": "retrieval"}], None, "must be"),
    ],
)
async def test_malformed_tool_requests_are_refused_before_any_call(
    fake_model, fake_profile, messages, tools, tool_choice, message
):
    with pytest.raises(BadRequest, match=message):
        await run("direct", fake_profile, messages=messages, tools=tools, tool_choice=tool_choice)
    assert fake_model.requests == []


def test_malformed_history_is_a_litellm_bad_request(fake_model, tmp_path):
    import composite_cli
    from composite_cli.litellm_loader import get_litellm

    composite_cli.register(
        settings=Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    )
    litellm = get_litellm()
    with pytest.raises(litellm.BadRequestError, match="no earlier message called"):
        litellm.completion(
            model="composite/moa", messages=[*ASK, {"role": "tool", "tool_call_id": "z", "content": "x"}]
        )
    assert fake_model.requests == []


# -- over the wire format a server uses: LiteLLM's Router ----------------------------------------


@pytest.mark.parametrize("mode", ["direct", "think-v1", "moa-v1"])
async def test_tool_loop_through_litellm_router(mode, fake_model, tmp_path):
    import composite_cli
    from composite_cli.litellm_loader import get_litellm

    composite_cli.register(
        settings=Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    )
    litellm = get_litellm()
    router = litellm.Router(
        model_list=[{"model_name": "assistant", "litellm_params": {"model": f"composite/{mode}"}}]
    )
    fake_model.on("answer", None, tool_calls=[weather_call()])
    first = await router.acompletion(model="assistant", messages=ASK, tools=[WEATHER])
    wire = first.model_dump()  # what an HTTP client would receive as JSON
    call = wire["choices"][0]["message"]["tool_calls"][0]
    assert wire["choices"][0]["finish_reason"] == "tool_calls"
    assert call["id"] == "call_w1" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    messages = [
        *ASK,
        wire["choices"][0]["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "18C"},
    ]
    messages[1] = {k: v for k, v in messages[1].items() if k in ("role", "content", "tool_calls")}
    messages[1]["tool_calls"] = [
        {k: c[k] for k in ("id", "type", "function")} for c in messages[1]["tool_calls"]
    ]
    fake_model.by_name.clear()
    fake_model.default.content = "18C in Paris"
    stream = await router.acompletion(model="assistant", messages=messages, tools=[WEATHER], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "18C in Paris"


def test_call_records_carry_the_full_tool_calls_for_the_trace(fake_model, fake_profile):
    import asyncio

    fake_model.on("answer", None, tool_calls=[think_call("x"), weather_call()])
    _, events = asyncio.run(run("think-v1", fake_profile, messages=ASK, tools=[WEATHER]))
    record = next(e.record for e in events if isinstance(e, CallFinished))
    assert [c["function"]["name"] for c in record.response["message"]["tool_calls"]] == [
        "think",
        "get_weather",
    ]


async def test_python_tool_runs_in_the_sandbox(fake_model, fake_profile, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-the-sandbox-1234")
    spec = parse_mode("name: t\nsteps:\n  - {id: s, kind: call, model: m, tools: [python]}\n")
    calls = [
        {
            "id": "p1",
            "type": "function",
            "function": {
                "name": "python",
                "arguments": json.dumps(
                    {"code": "import math, os\nprint(math.factorial(10), os.environ.get('OPENAI_API_KEY'))"}
                ),
            },
        },
        {
            "id": "p2",
            "type": "function",
            "function": {
                "name": "python",
                "arguments": json.dumps(
                    {"code": "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=1)"}
                ),
            },
        },
    ]
    fake_model.on("s", None, tool_calls=calls).on("s", "10! is 3628800")
    result, events = await run(spec, fake_profile, messages=ASK)
    assert result.text == "10! is 3628800"
    results = fake_model.requests[1]["messages"][-2:]
    assert results[0] == {"role": "tool", "tool_call_id": "p1", "content": "3628800 None\n"}
    assert results[1]["content"].startswith("Error:") and "sk-never" not in str(fake_model.requests)
    statuses = [e.status for e in events if isinstance(e, StepFinished) and e.step_id != events[1].step_id]
    assert "error" in statuses
