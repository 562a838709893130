"""rlm-v1: the REPL protocol, FINAL parsing, sub-calls, caps and traces, with a scripted root."""

from __future__ import annotations

import re

import pytest

from composite_cli.config import Profile, Settings
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.rlm.protocol import Final, code_blocks, find_final, truncate
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.events import CallFinished, CallStarted, StepFinished, StepStarted
from composite_cli.runner import Runner

NEEDLE = "The secret code for the Lyon warehouse is QX-7731."


def haystack(chars: int, needle_at: float = 0.6) -> str:
    lines, i = [], 0
    while sum(len(x) + 1 for x in lines) < chars:
        lines.append(f"2024-03-11 10:{i % 60:02d}:07 INFO order {48000 + i} shipped from Lyon to Porto")
        i += 1
    lines.insert(int(len(lines) * needle_at), NEEDLE)
    return "\n".join(lines) + "\n\nQuestion: What is the secret code for the Lyon warehouse?"


# -- protocol ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("FINAL(Paris)", Final("text", "Paris")),
        ('The answer:\nFINAL("Paris")', Final("text", "Paris")),
        ("FINAL('QX-7731')", Final("text", "QX-7731")),
        ('FINAL("""line one\nline two""")', Final("text", "line one\nline two")),
        (
            "FINAL(The total is 42\n(computed from 3 parts))",
            Final("text", "The total is 42\n(computed from 3 parts)"),
        ),
        ("  **FINAL(Lyon)**", Final("text", "Lyon")),
        ("> FINAL(quoted)", Final("text", "quoted")),
        ("```\nFINAL(inside a plain fence)\n```", Final("text", "inside a plain fence")),
        ("FINAL_VAR(result)", Final("var", "result")),
        ("FINAL_VAR('result')", Final("var", "result")),
        ('FINAL("a (tricky) paren)")', Final("text", "a (tricky) paren)")),
        ("FINAL(unclosed at the end", Final("text", "unclosed at the end")),
        ("Draft: FINAL(a)\nFINAL(b)", Final("text", "b")),
    ],
)
def test_final_is_found(reply, expected):
    assert find_final(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "When I know the code I will give FINAL(answer).",  # mentioned inside reasoning
        "I should call FINAL(42) once I am sure",  # not at the start of a line
        "FINAL(answer)",  # a placeholder
        "FINAL(...)",
        "FINAL(your final answer here)",
        "```repl\nFINAL(x)\n```",  # inside executed code: the REPL handles it
        "FINAL_VAR(not a name)",
        "nothing here",
    ],
)
def test_final_is_not_found(reply):
    assert find_final(reply) is None


def test_code_blocks_prefer_repl_then_python():
    assert code_blocks("a\n```repl\nx = 1\n```\nb\n```python\ny = 2\n```") == ["x = 1\n"]
    assert code_blocks("```python\ny = 2\n```") == ["y = 2\n"]
    assert code_blocks("```\nprose\n```") == []
    assert truncate("abcdef", 3) == "abc\n[... truncated 3 chars]"


# -- the loop, with a scripted root ---------------------------------------------------------------------

PROFILE = Profile("scripted", {"*": {"model": "openai/fake"}})
SPLIT_AND_ASK = """I will split the context into chunks and ask a sub-model about each.
```repl
chunks = [context[i:i + 5000] for i in range(0, len(context), 5000)]
answers = llm_query_batched([f"Find the Lyon warehouse secret code in this text, or say NONE:\\n{c}" for c in chunks])
found = [a for a in answers if a != "NONE"]
print(len(chunks), found)
```"""


def sub_model(name, messages):
    """A sub-model that reads its chunk and reports the code if the needle is in it."""
    if not name.startswith("llm_query"):
        return None
    match = re.search(r"secret code for the Lyon warehouse is ([A-Z]+-\d+)", messages[-1]["content"])
    return match.group(1) if match else "NONE"


def root_model(final: str = "FINAL_VAR(code)"):
    def respond(name, messages):
        if not name.startswith("root"):
            return None
        turn = sum(1 for m in messages if m["role"] == "assistant") + 1
        if turn == 1:
            return SPLIT_AND_ASK
        if turn == 2:
            return f"```repl\ncode = found[0]\nprint(code)\n```\n{final}"
        return "FINAL(gave up)"

    return respond


async def run_rlm(fake_model, context: str, tmp_path, params=None, profile=PROFILE):
    runner = Runner(Settings(profile=profile, db_path=tmp_path / "t.db"))
    events: list = []
    result = await runner.run(
        "rlm-v1",
        RunRequest(messages=[{"role": "user", "content": context}], params=params or {}),
        subscribers=[events.append],
    )
    runner.flush()
    return runner, result, events


async def test_rlm_finds_a_needle_in_a_long_context(fake_model, tmp_path):
    context = haystack(60_000)
    fake_model.script(sub_model).script(root_model())
    runner, result, _events = await run_rlm(fake_model, context, tmp_path)
    assert result.text == "QX-7731" and result.status == "ok" and result.finish_reason == "stop"
    # the root never sees the whole context: only a preview of its head and tail
    for request in fake_model.requests:
        if request["metadata"]["composite_call"].startswith("root"):
            assert sum(len(m["content"]) for m in request["messages"]) < 8000
            assert NEEDLE not in str(request["messages"])
    subs = [r for r in fake_model.requests if r["metadata"]["composite_call"].startswith("llm_query")]
    assert len(subs) == 13
    # every sub-call is in the trace, under the REPL iteration that made it, one level deeper
    run = runner.store.get_run(result.run_id)
    assert run["rlm_iterations"] == 2 and run["rlm_depth"] == 1 and run["rlm_sub_calls"] == 13
    steps = runner.store.run_steps(result.run_id)
    iteration = next(s for s in steps if s["kind"] == "repl" and s["name"] == "iteration 1")
    assert "llm_query_batched" in iteration["request_json"] and "QX-7731" in iteration["output"]
    children = [s for s in steps if s["parent_id"] == iteration["id"]]
    assert len(children) == 13 and {c["kind"] for c in children} == {"llm"}
    assert {c["depth"] for c in children} == {iteration["depth"] + 1}
    assert run["calls"] == 2 + 13
    runner.close()


async def test_batched_sub_calls_run_in_parallel(fake_model, tmp_path):
    fake_model.script(sub_model).script(root_model())
    for i in range(13):
        fake_model.on(f"llm_query[{i}]", "NONE", delay=0.05)
    _, _result, events = await run_rlm(fake_model, haystack(60_000), tmp_path, params={"concurrency": 4})
    order = [
        (type(e).__name__, e.name if isinstance(e, CallStarted) else e.record.name)
        for e in events
        if isinstance(e, (CallStarted, CallFinished))
        and "llm_query" in (e.name if isinstance(e, CallStarted) else e.record.name)
    ]
    first_finish = next(i for i, (kind, _) in enumerate(order) if kind == "CallFinished")
    assert first_finish >= 4, "four sub-calls start before the first one ends"


async def test_final_var_inside_the_repl_and_errors_shown_to_the_model(fake_model, tmp_path):
    def root(name, messages):
        if not name.startswith("root"):
            return None
        turn = sum(1 for m in messages if m["role"] == "assistant") + 1
        if turn == 1:
            return "```repl\nprint(undefined_name)\n```"
        assert "NameError" in messages[-1]["content"]  # the model sees its error
        return "```repl\nn = context.count('shipped')\nFINAL_VAR('n')\n```"

    fake_model.script(root)
    context = haystack(20_000)
    _, result, _ = await run_rlm(fake_model, context, tmp_path)
    assert result.text == str(context.count("shipped"))


async def test_max_iterations_gives_a_partial_answer(fake_model, tmp_path):
    fake_model.script(
        lambda name, m: (
            "Still looking.\n```repl\nprint(len(context))\n```" if name.startswith("root") else None
        )
    )
    runner, result, events = await run_rlm(  # (the same code each turn would start the fallback)
        fake_model, haystack(20_000), tmp_path, params={"max_iterations": 3, "fallback_after": -1}
    )
    assert result.status == "partial" and result.finish_reason == "length"
    assert result.text == "Still looking."
    assert runner.store.get_run(result.run_id)["status"] == "partial"
    rlm_step = next(e for e in events if isinstance(e, StepFinished) and e.status == "partial")
    assert "max_iterations (3)" in rlm_step.scratchpad and result.stopped_by == "max_iterations (3)"
    assert "syscalls" in result.notes["rlm"].pop("sandbox")  # the layers in effect
    assert result.notes == {
        "rlm": {"path": "model", "iterations": 3, "sub_calls": 0, "stopped_by": "max_iterations (3)"}
    }
    runner.close()


@pytest.mark.parametrize(
    ("params", "reason"),
    [({"max_calls": 5}, "max_calls (5)"), ({"deadline": 0.3}, "deadline (0.3s)")],
)
async def test_caps_end_in_a_partial_answer_not_a_crash(fake_model, tmp_path, params, reason):
    Reply = type(fake_model.default)
    code = "```repl\nprint(llm_query_batched([context[:100]] * 3))\n```"
    fake_model.script(lambda name, m: Reply(code, delay=0.05) if name.startswith("root") else None)
    fake_model.default.delay = 0.05
    _, result, events = await run_rlm(fake_model, haystack(20_000), tmp_path, params=params)
    assert result.status == "partial" and result.stopped_by == reason
    notes = next(e.scratchpad for e in events if isinstance(e, StepFinished) and e.status == "partial")
    assert reason in notes


async def test_cost_budget_ends_in_a_partial_answer(fake_model, tmp_path):
    priced = Profile("priced", {"*": {"model": "openai/gpt-4o"}})
    fake_model.script(lambda name, m: "```repl\nprint(1)\n```" if name.startswith("root") else None)
    _, result, events = await run_rlm(
        fake_model, haystack(20_000), tmp_path, params={"budget_usd": 0.0001}, profile=priced
    )
    assert result.status == "partial"
    notes = next(e.scratchpad for e in events if isinstance(e, StepFinished) and e.status == "partial")
    assert "budget_usd ($0.0001" in notes and result.stopped_by.startswith("budget_usd ($0.0001")


async def test_sandbox_escapes_become_errors_the_model_sees(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value-123456")
    attempts = [
        "import os\nprint(os.environ.get('OPENAI_API_KEY'))",
        "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
        "open('/tmp/escaped', 'w').write('x')",
        "import subprocess\nsubprocess.run(['echo', 'hi'])",
    ]

    def root(name, messages):
        if not name.startswith("root"):
            return None
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn < len(attempts):
            return f"```repl\n{attempts[turn]}\n```"
        return "FINAL(done)"

    fake_model.script(root)
    runner, result, _ = await run_rlm(fake_model, haystack(20_000), tmp_path)
    assert result.text == "done"
    outputs = [m["content"] for r in fake_model.requests for m in r["messages"] if m["role"] == "user"]
    last = outputs[-1] if outputs else ""
    assert "sk-test-secret-value-123456" not in str(fake_model.requests)
    assert "None" in str(fake_model.requests[1]["messages"][-1]["content"])  # the key is not there
    assert "PermissionError" in last or "Error" in last
    repl_steps = [s for s in runner.store.run_steps(result.run_id) if s["kind"] == "repl"]
    assert len(repl_steps) == 4 and sum(1 for s in repl_steps if s["status"] == "error") == 3
    import os

    assert not os.path.exists("/tmp/escaped")
    runner.close()


async def test_rlm_query_starts_a_child_rlm_at_depth_two(fake_model, tmp_path):
    def root(name, messages):
        if not name.startswith("root"):
            return None
        if name.startswith("root d2"):  # a FINAL comes after the child has looked with code
            if messages[-1]["content"].startswith("REPL output:"):
                return "FINAL(child says 7)"
            return "```repl\nprint(context[:100])\n```"
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0:
            return "```repl\nprint(rlm_query('how many?', context[:3000]))\n```"
        return "FINAL(parent done)"

    fake_model.script(root)
    runner, result, events = await run_rlm(fake_model, haystack(20_000), tmp_path, params={"max_depth": 2})
    assert result.text == "parent done"
    child = next(
        e for e in events if isinstance(e, StepStarted) and e.kind == "rlm" and e.name == "rlm_query"
    )
    assert "child says 7" in fake_model.requests[-1]["messages"][-1]["content"]
    assert runner.store.get_run(result.run_id)["rlm_depth"] == 2
    iteration = next(e for e in events if isinstance(e, StepStarted) and e.kind == "repl")
    assert child.parent_id == iteration.step_id and child.depth > iteration.depth
    runner.close()


async def test_rlm_query_refused_beyond_max_depth(fake_model, tmp_path):
    def root(name, messages):
        if not name.startswith("root"):
            return None
        if not any(m["role"] == "assistant" for m in messages):
            return "```repl\nprint(rlm_query('q', 'c'))\n```"
        return "FINAL(ok)"

    fake_model.script(root)
    await run_rlm(fake_model, haystack(20_000), tmp_path)
    assert "rlm_query" in fake_model.requests[-1]["messages"][-1]["content"]
    assert "NameError" in fake_model.requests[-1]["messages"][-1]["content"]  # max_depth 1: not even defined


def test_rlm_step_validation():
    spec = ModeLibrary().load("rlm")
    assert spec.name == "rlm-v1" and spec.aliases() == ["root", "sub"]
    with pytest.raises(Exception, match="context: must be input"):
        parse_mode("name: t\nsteps:\n  - {id: r, kind: rlm, model: m, context: everything}\n")


async def test_a_failed_sub_call_is_its_slots_error_not_the_batchs(fake_model, tmp_path):
    import litellm

    Reply = type(fake_model.default)
    fake_model.on("llm_query[0]", error=litellm.BadRequestError("too long", "openai", "x"))

    def root(name, messages):
        if not name.startswith("root"):
            return None
        if not any(m["role"] == "assistant" for m in messages):
            return Reply("```repl\nprint(llm_query_batched(['a', 'b', 'c', 'd']))\n```")
        return Reply("FINAL(stopped)")

    fake_model.script(root)
    runner, result, events = await run_rlm(fake_model, haystack(5_000), tmp_path)
    assert result.text == "stopped"
    finished = [
        e.record for e in events if isinstance(e, CallFinished) and e.record.name.startswith("llm_query")
    ]
    assert sorted(r.status for r in finished) == ["error", "ok", "ok", "ok"]
    told = fake_model.requests[-1]["messages"][-1]["content"]
    assert "['Error: BadRequestError: " in told and "LLMQueryError" not in told
    runner.close()


async def test_call_cap_is_exact_and_the_root_gets_a_last_turn(fake_model, tmp_path):
    def root(name, messages):
        if not name.startswith("root"):
            return None
        last = messages[-1]["content"]
        if "answer now" in last.lower() or "give your best answer now" in last.lower():
            return "FINAL(best effort)"
        return "```repl\nprint(llm_query_batched(['q'] * 10))\n```"

    fake_model.script(root)
    _, result, events = await run_rlm(
        fake_model, haystack(5_000), tmp_path, params={"max_calls": 8, "concurrency": 4}
    )
    starts = [e for e in events if isinstance(e, CallStarted)]
    assert len(starts) <= 8, "never more calls than max_calls"
    assert result.text == "best effort"


async def test_a_full_root_window_drops_old_turns_and_retries(fake_model, tmp_path):
    import litellm

    Reply = type(fake_model.default)
    seen: list[int] = []

    def root(name, messages):
        if not name.startswith("root"):
            return None
        seen.append(len(messages))
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns >= 2:
            return Reply(None, error=litellm.ContextWindowExceededError("full", "x", "openai"))
        if len(seen) >= 4:
            return "FINAL(after trimming)"
        return "```repl\nprint(1)\n```"

    fake_model.script(root)
    _, result, events = await run_rlm(fake_model, haystack(5_000), tmp_path)
    assert result.text == "after trimming"
    notes = [e.scratchpad for e in events if isinstance(e, StepFinished) and e.scratchpad]
    assert any("context window full" in n for n in notes)
