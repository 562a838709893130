"""rlm-v1's protocol update (issue 15): the `answer` dict as a final answer, and per-item failure
isolation in llm_query_batched. Scripted root models; no wall-clock asserts."""

from __future__ import annotations

import pytest

from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.runner import Runner

PROFILE = Profile("scripted", {"*": {"model": "openai/fake"}})
CONTEXT = (
    "\n".join(f"line {i}: order {48000 + i} shipped" for i in range(400)) + "\n\nQuestion: how many lines?"
)


def scripted_root(*replies: str):
    """A root model that says `replies` in turn (then gives up), and records what it was told."""
    told: list[str] = []

    def respond(name, messages):
        if not name.startswith("root"):
            return None
        turn = sum(1 for m in messages if m["role"] == "assistant")
        told.append(str(messages[-1]["content"]))
        return replies[turn] if turn < len(replies) else "FINAL(gave up)"

    return respond, told


async def run_rlm(fake_model, tmp_path, params=None, context=CONTEXT):
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    result = await runner.run(
        "rlm-v1", RunRequest(messages=[{"role": "user", "content": context}], params=params or {})
    )
    runner.flush()
    return runner, result


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


# -- the answer dict --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        'answer = {"content": "400 lines", "ready": True}',
        'answer["content"] = "400 lines"\nanswer["ready"] = True',
        'n = len(context.splitlines()) - 2\nanswer.update(content=f"{n} lines", ready=True)',
    ],
)
async def test_a_ready_answer_dict_ends_the_session(fake_model, tmp_path, code):
    root, _told = scripted_root(repl(code))
    fake_model.script(root)
    runner, result = await run_rlm(fake_model, tmp_path)
    assert result.text == "400 lines" and result.status == "ok"
    assert result.notes["rlm"]["iterations"] == 1
    runner.close()


async def test_a_number_as_content_is_its_text(fake_model, tmp_path):
    root, _ = scripted_root(repl('answer = {"content": 400, "ready": True}'))
    fake_model.script(root)
    runner, result = await run_rlm(fake_model, tmp_path)
    assert result.text == "400"
    runner.close()


@pytest.mark.parametrize(
    "code",
    [
        'answer = {"content": "not yet", "ready": False}',
        'answer = {"content": "no ready key"}',
        'answer = "a plain variable named answer"',
        'answer = ["content", "ready", True]',
    ],
)
async def test_an_answer_that_is_not_ready_does_not_end_it(fake_model, tmp_path, code):
    root, told = scripted_root(repl(code), repl('answer = {"content": "second", "ready": True}'))
    fake_model.script(root)
    runner, result = await run_rlm(fake_model, tmp_path)
    assert result.text == "second" and result.notes["rlm"]["iterations"] == 2
    assert "not accepted" not in told[1]  # nothing to report: it simply was not an answer yet
    runner.close()


@pytest.mark.parametrize(
    ("code", "told_text"),
    [
        ('answer = {"content": ["a", "list"], "ready": True}', "must be a string, not list"),
        ('answer = {"content": None, "ready": True}', "must be a string, not NoneType"),
        ('answer = {"content": "x" * 1_000_001, "ready": True}', "1000001 characters, more than 1000000"),
        ('answer = {"content": "   ", "ready": True}', "answer['content'] is empty"),
        ('answer = {"content": "ok", "ready": "yes"}', "must be True or False, not str"),
        ('answer = {"content": 10**5000, "ready": True}', "could not be read: Exceeds the limit"),
        (
            "answer = {'content': 'x', 'ready': True}\ndel _composite_tools",
            "the answer check failed: NameError",
        ),
    ],
)
async def test_a_malformed_answer_is_told_to_the_root_not_a_crash(fake_model, tmp_path, code, told_text):
    root, told = scripted_root(repl(code), repl("print(answer['ready'])"), "FINAL(fixed)")
    fake_model.script(root)
    runner, result = await run_rlm(fake_model, tmp_path)
    assert result.status == "ok" and result.text == "fixed"
    assert "answer not accepted: " in told[1] and told_text in told[1]
    assert "False" in told[2]  # `ready` was set back to False
    runner.close()


async def test_an_answer_dict_with_overridden_methods_is_read_as_a_dict(fake_model, tmp_path):
    code = (
        "class Sly(dict):\n"
        "    def get(self, *a):\n        raise SystemExit\n"
        "    def __getitem__(self, k):\n        raise SystemExit\n"
        'isinstance = len = print = None\nanswer = Sly(content="plain", ready=True)'
    )
    root, _ = scripted_root(repl(code))
    fake_model.script(root)
    runner, result = await run_rlm(fake_model, tmp_path)
    assert result.text == "plain"
    runner.close()


async def test_a_refused_answer_dict_is_forgotten(fake_model, tmp_path):
    # the worked example's answer is refused (copied, not found); the dict's ready flag goes back
    root, told = scripted_root(
        repl('answer = {"content": "Tallinn", "ready": True}'), repl("print(answer['ready'])")
    )
    fake_model.script(root)
    runner, result = await run_rlm(fake_model, tmp_path)
    assert "FINAL not accepted" in told[1] and "False" in told[2]
    assert result.text == "gave up"
    runner.close()


# -- failure isolation in llm_query_batched ---------------------------------------------------------

BATCH = repl(
    'answers = llm_query_batched(["one", "two", "three"])\n'
    'print([a[:40] for a in answers])\nanswer = {"content": " | ".join(answers), "ready": True}'
)


async def test_a_failed_item_is_an_error_string_in_its_slot(fake_model, tmp_path):
    root, _told = scripted_root(BATCH)
    fake_model.script(root)
    fake_model.on("llm_query[0]", "first")
    fake_model.on("llm_query[1]", error=RuntimeError("upstream said no\nsecond line"))
    fake_model.on("llm_query[2]", "third")
    runner, result = await run_rlm(fake_model, tmp_path, params={"fallback_after": -1})
    assert result.status == "ok"
    assert result.text == "first | Error: RuntimeError: upstream said no | third"
    # the failed item is an error row in the trace, under the REPL block; the others are ok
    steps = runner.store.run_steps(result.run_id)
    block = next(s for s in steps if s["kind"] == "repl")
    subs = {s["name"]: s["status"] for s in steps if s["parent_id"] == block["id"]}
    assert subs == {"llm_query[0]": "ok", "llm_query[1]": "error", "llm_query[2]": "ok"}
    assert block["status"] == "ok"
    rlm_step = next(s for s in steps if s["kind"] == "rlm")
    assert "llm_query[1] failed: RuntimeError: upstream said no" in (rlm_step["scratchpad"] or "")
    runner.close()


async def test_a_single_llm_query_that_fails_raises_in_the_code(fake_model, tmp_path):
    code = repl(
        'try:\n    llm_query("one")\nexcept LLMQueryError as e:\n    print("caught", e)\n'
        'answer = {"content": "done", "ready": True}'
    )
    root, _told = scripted_root(code)
    fake_model.script(root)
    fake_model.on("llm_query", error=RuntimeError("upstream said no"))
    runner, result = await run_rlm(fake_model, tmp_path)
    assert result.text == "done"
    steps = runner.store.run_steps(result.run_id)
    assert (
        "caught Error: RuntimeError: upstream said no"
        in next(s for s in steps if s["kind"] == "repl")["output"]
    )
    runner.close()


@pytest.mark.parametrize(
    ("params", "stopped_by"),
    [({"max_calls": 3}, "max_calls (3)"), ({"budget_usd": 0.0}, "budget_usd")],
)
async def test_a_run_level_cap_in_a_batch_stops_the_run_not_an_item(fake_model, tmp_path, params, stopped_by):
    root, _told = scripted_root(BATCH, BATCH)
    fake_model.script(root)
    priced = Profile("priced", {"*": {"model": "openai/gpt-4o"}})
    runner = Runner(Settings(profile=priced, db_path=tmp_path / "t.db"))
    result = await runner.run(
        "rlm-v1", RunRequest(messages=[{"role": "user", "content": CONTEXT}], params=params)
    )
    runner.flush()
    # not an answer made of error strings: the cap fails the batch and ends the run, partial
    assert result.status == "partial" and result.stopped_by.startswith(stopped_by)
    assert " | " not in result.text
    runner.close()


async def test_the_runs_own_call_limit_in_a_batch_stops_the_run(fake_model, tmp_path):
    # the mode's `limits.max_calls` (the run's cap), lower than the step's own max_calls
    spec = parse_mode(
        "name: capped\nlimits: {max_calls: 3}\n"
        "steps:\n  - {id: answer, kind: rlm, model: root, sub_model: sub, max_calls: 100}\n"
    )
    root, _told = scripted_root(BATCH, BATCH)
    fake_model.script(root)
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    result = await runner.run(spec, RunRequest(messages=[{"role": "user", "content": CONTEXT}]))
    runner.flush()
    assert result.status == "partial" and "max_calls (3)" in (result.stopped_by or "")
    assert " | " not in result.text
    runner.close()
