"""rlm-v1's fallback: when it starts, the program it runs in the REPL, how it is recorded."""

from __future__ import annotations

import json
import re

import litellm
import pytest
from conftest import Reply
from test_rlm import NEEDLE, haystack, root_model, run_rlm, sub_model

from composite_cli.engine.rlm import fallback
from composite_cli.errors import CompositeError
from composite_cli.model_limits import estimate_tokens

PROSE = "I think the answer is somewhere in the text. Let me think about it more."


def prose_root(name, messages):
    """A root that never writes code (what SmolLM2 mostly does)."""
    return PROSE if name.startswith("root") else None


def is_answer_call(prompt: str) -> bool:
    return prompt.endswith("Answer with the exact words of the text above.")


def reader(name, messages):
    """A sub-model: copies the needle's sentence when its chunk has it, else says NONE; answers
    the final question from its notes."""
    if not name.startswith("llm_query"):
        return None
    prompt = messages[-1]["content"]
    if is_answer_call(prompt):
        match = re.search(r"is ([A-Z]+-\d+)", prompt)
        return f"The code is {match.group(1)}." if match else "I do not know."
    return NEEDLE if NEEDLE in prompt else "NONE"


def steps_of(runner, result):
    return runner.store.run_steps(result.run_id)


def rlm_notes(runner, result) -> str:
    return next(s["scratchpad"] for s in steps_of(runner, result) if s["kind"] == "rlm")


# -- when the fallback starts ------------------------------------------------------------------------


async def test_a_root_without_code_falls_back_after_two_turns(fake_model, tmp_path):
    fake_model.script(prose_root).script(reader)
    runner, result, _ = await run_rlm(fake_model, haystack(60_000), tmp_path)
    assert result.text == "The code is QX-7731." and result.status == "ok"
    assert "network" in result.notes["rlm"].pop("sandbox")  # the layers in effect
    assert result.notes == {
        "rlm": {
            "path": "fallback",
            "reason": "2 root turn(s) without code that runs",
            "iterations": 2,
            "sub_calls": result.notes["rlm"]["sub_calls"],
        }
    }
    names = fake_model.names()
    assert names[:2] == ["root (iteration 1)", "root (iteration 2)"]
    assert not any(n.startswith("root") for n in names[2:]), "the root is not called again"
    # the trace says which path answered and why, and shows the program that ran in the REPL
    assert "path: fallback (2 root turn(s) without code that runs)" in rlm_notes(runner, result)
    steps = steps_of(runner, result)
    repl = {s["name"]: s for s in steps if s["kind"] == "repl"}
    assert list(repl) == ["fallback: findings", "fallback: answer"]
    findings = repl["fallback: findings"]
    assert "llm_query_batched" in json.loads(findings["request_json"])["code"]
    assert "notes: ['The secret code for the Lyon warehouse is QX-7731.']" in findings["output"]
    subs = [s for s in steps if s["parent_id"] == findings["id"]]
    assert subs and {s["kind"] for s in subs} == {"llm"}
    assert len(subs) <= 4, "at most fallback_chunks chunks are read"
    answer_calls = [s for s in steps if s["parent_id"] == repl["fallback: answer"]["id"]]
    assert len(answer_calls) == 1
    runner.close()


@pytest.mark.parametrize(
    ("code", "falls_back"),
    [
        ("print(undefined_name)  # {turn}", True),  # NameError: not a program for this REPL
        ("this is prose in a fence {turn}", True),  # SyntaxError
        ("print(len(context))", True),  # the same code every turn: no progress
        ("open('/etc/shadow').read()  # {turn}", False),  # a real program that failed: the root goes on
        ("print(len(context) + {turn})", False),
    ],
)
async def test_which_turns_count_as_without_code_that_runs(fake_model, tmp_path, code, falls_back):
    turns = iter(range(1, 100))
    fake_model.script(
        lambda name, m: f"```repl\n{code.format(turn=next(turns))}\n```" if name.startswith("root") else None
    )
    fake_model.script(reader)
    _, result, _ = await run_rlm(fake_model, haystack(20_000), tmp_path, params={"max_iterations": 3})
    assert (result.notes["rlm"]["path"] == "fallback") is falls_back
    if not falls_back:
        assert result.status == "partial" and result.stopped_by == "max_iterations (3)"


async def test_fallback_after_zero_skips_the_root_and_minus_one_turns_it_off(fake_model, tmp_path):
    fake_model.script(prose_root).script(reader)
    _, result, _ = await run_rlm(fake_model, haystack(30_000), tmp_path, params={"fallback_after": 0})
    assert not any(n.startswith("root") for n in fake_model.names())
    assert (
        result.notes["rlm"]["path"] == "fallback" and result.notes["rlm"]["reason"] == "fallback_after is 0"
    )
    assert result.text == "The code is QX-7731."

    fake_model.requests.clear()
    _, result, _ = await run_rlm(
        fake_model, haystack(30_000), tmp_path, params={"fallback_after": -1, "max_iterations": 3}
    )
    assert result.status == "partial" and result.stopped_by == "max_iterations (3)"
    assert result.notes["rlm"]["path"] == "model" and result.text == PROSE
    assert not any(n.startswith("llm_query") for n in fake_model.names())


async def test_a_root_window_too_small_for_one_turn_falls_back(fake_model, tmp_path):
    full = litellm.ContextWindowExceededError("prompt too long", "fake", "openai")
    fake_model.script(lambda name, m: Reply(None, error=full) if name.startswith("root") else None)
    fake_model.script(reader)
    _, result, _ = await run_rlm(fake_model, haystack(30_000), tmp_path)
    assert (
        result.notes["rlm"]["path"] == "fallback"
        and "too small for one turn" in result.notes["rlm"]["reason"]
    )
    assert result.text == "The code is QX-7731."


async def test_a_root_that_follows_the_protocol_never_falls_back(fake_model, tmp_path):
    fake_model.script(sub_model).script(root_model())
    runner, result, _ = await run_rlm(fake_model, haystack(60_000), tmp_path)
    assert result.text == "QX-7731"
    sandbox = result.notes["rlm"].pop("sandbox")
    assert result.notes == {"rlm": {"path": "model", "iterations": 2, "sub_calls": 13}}
    assert "path: model (FINAL after 2 iteration(s))" in rlm_notes(runner, result)
    # the run says which isolation layers took effect on this machine, in its notes and the step's
    assert {"network", "files", "syscalls", "disk", "processes", "cgroup", "audit hook"} <= set(sandbox)
    assert f"network: {sandbox['network']}; " in rlm_notes(runner, result).split("sandbox: ")[1]
    assert not any(s["name"].startswith("fallback") for s in steps_of(runner, result))
    runner.close()


# -- the program ---------------------------------------------------------------------------------


async def test_invented_notes_are_dropped_and_the_answer_uses_the_grounded_one(fake_model, tmp_path):
    def liar(name, messages):
        if not name.startswith("llm_query"):
            return None
        prompt = messages[-1]["content"]
        if is_answer_call(prompt):
            return prompt  # echo, so the test sees what the answer call was given
        return NEEDLE if NEEDLE in prompt else "The secret code for the Lyon warehouse is ZZ-1111."

    fake_model.script(prose_root).script(liar)
    _, result, _ = await run_rlm(fake_model, haystack(60_000), tmp_path, params={"fallback_after": 0})
    assert "QX-7731" in result.text and "ZZ-1111" not in result.text


async def test_chunks_are_ranked_by_the_question_and_fit_the_sub_window(fake_model, tmp_path):
    fake_model.script(prose_root).script(reader)
    await run_rlm(fake_model, haystack(60_000), tmp_path, params={"fallback_after": 0})
    reads = [
        r
        for r in fake_model.requests
        if r["metadata"]["composite_call"].startswith("llm_query")
        and not is_answer_call(r["messages"][0]["content"])
    ]
    assert NEEDLE in reads[0]["messages"][0]["content"], "the best-ranked chunk is read first"
    for r in reads:
        assert estimate_tokens(r["messages"][0]["content"]) <= 8192 // 4 + 100
    assert all(r["max_tokens"] == fallback.NOTE_TOKENS and r["temperature"] == 0.0 for r in reads)


async def test_a_short_context_is_asked_whole_in_one_call(fake_model, tmp_path):
    fake_model.script(prose_root)
    fake_model.on("llm_query", "The Ruy Lopez.")
    runner, result, _ = await run_rlm(
        fake_model,
        "Which chess opening begins 1.e4 e5 2.Nf3 Nc6 3.Bb5?",
        tmp_path,
        params={"fallback_after": 0},
    )
    assert result.text == "The Ruy Lopez." and result.notes["rlm"]["path"] == "fallback"
    sub = fake_model.request("llm_query")
    assert sub["messages"] == [
        {"role": "user", "content": "Which chess opening begins 1.e4 e5 2.Nf3 Nc6 3.Bb5?"}
    ]
    assert [s["name"] for s in steps_of(runner, result) if s["kind"] == "repl"] == ["fallback: whole context"]
    runner.close()


@pytest.mark.parametrize(
    ("params", "cap"),
    [({"fallback_after": 0, "max_calls": 1}, "max_calls (1)"), ({"deadline": 0.5}, "deadline (0.5s)")],
)
async def test_caps_during_the_fallback_give_a_partial_answer_naming_the_cap(
    fake_model, tmp_path, params, cap
):
    fake_model.script(lambda name, m: Reply(PROSE, delay=0.2) if name.startswith("root") else None)
    fake_model.script(reader)
    fake_model.default.delay = 0.5
    _, result, _ = await run_rlm(fake_model, haystack(60_000), tmp_path, params=params)
    assert result.status == "partial" and result.finish_reason == "length"
    assert result.stopped_by == cap and result.notes["rlm"]["stopped_by"] == cap


async def test_a_sub_call_error_in_the_fallback_fails_the_run_with_a_clear_error(fake_model, tmp_path):
    boom = litellm.BadRequestError("the provider refused", "fake", "openai")
    fake_model.script(prose_root)
    fake_model.script(lambda name, m: Reply(None, error=boom) if name.startswith("llm_query") else None)
    # a failed chunk read is its slot's error (dropped from the notes); the answer call's is the run's
    with pytest.raises(CompositeError, match="the fallback program failed in 'fallback: answer'"):
        await run_rlm(fake_model, haystack(30_000), tmp_path, params={"fallback_after": 0})


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("long document\n\nQuestion: What is the port?", "What is the port?"),
        ("What is the port?\n\n" + "filler line\n" * 200 + "end", "What is the port?"),
        ("x" * 2000 + "\nwhat is the port", "what is the port"),
    ],
)
def test_the_question_is_found_and_left_out_of_the_document(text, question):
    found, start, end = fallback.split_question(text)
    assert found == question and question not in text[start:end]


def test_a_conversation_s_question_is_its_last_user_message():
    chat = [{"role": "user", "content": "hello"}, {"role": "user", "content": "What is the port?"}]
    found, start, end = fallback.split_question(chat)
    assert found == "What is the port?" and fallback.context_text(chat)[start:end] == "user: hello\n\nuser: "


async def test_the_worked_example_runs_as_written(fake_model, tmp_path):
    """A root that copies the system prompt's example finds the needle: `question` is preset in
    the REPL, and the example reads only the chunks that share words with it."""

    def copier(name, messages):
        if not name.startswith("root"):
            return None
        if messages[-1]["content"].startswith("REPL output:"):
            found = re.search(r"is ([A-Z]+-\d+)", messages[-1]["content"])
            return f"FINAL({found.group(1)})" if found else "FINAL(not found)"
        example = re.search(r"```repl\n.*?```", messages[0]["content"], re.S)
        return "I will ask the helper model.\n" + example.group(0)

    fake_model.script(copier).script(reader)
    runner, result, _ = await run_rlm(fake_model, haystack(60_000), tmp_path)
    assert result.text == "QX-7731" and result.notes["rlm"]["path"] == "model"
    subs = [n for n in fake_model.names() if n.startswith("llm_query")]
    assert 1 <= len(subs) <= 4
    runner.close()


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("FINAL(QX-0000)", "no code has run yet"),  # a guess before looking at a long context
        ("```repl\nprint(len(context))\n```\nFINAL(Tallinn)", "the worked example's answer"),
    ],
)
async def test_a_final_that_cannot_be_an_answer_is_refused(fake_model, tmp_path, reply, why):
    fake_model.script(lambda name, m: reply if name.startswith("root") else None).script(reader)
    runner, result, _ = await run_rlm(fake_model, haystack(30_000), tmp_path)
    assert result.text == "The code is QX-7731." and result.notes["rlm"]["path"] == "fallback"
    second = fake_model.request("root (iteration 2)")["messages"][-1]["content"]
    assert second.startswith("FINAL not accepted:") and why in second
    assert "not accepted" in rlm_notes(runner, result)
    runner.close()


async def test_a_short_context_shown_whole_may_be_answered_at_once(fake_model, tmp_path):
    fake_model.script(lambda name, m: "FINAL(Ruy Lopez)" if name.startswith("root") else None)
    _, result, _ = await run_rlm(fake_model, "Which opening begins 1.e4 e5 2.Nf3 Nc6 3.Bb5?", tmp_path)
    assert result.text == "Ruy Lopez" and result.notes["rlm"]["path"] == "model"


async def test_the_fallback_runs_though_the_root_rebound_the_repl_s_functions(fake_model, tmp_path):
    """SmolLM2 defines its own llm_query_batched (and worse): the program restores the REPL's."""
    clobber = (
        "```repl\ndef llm_query_batched(key):\n    return [answer]\n"
        "print = len = sorted = FINAL_VAR = None\n```"
    )
    fake_model.script(lambda name, m: clobber if name.startswith("root") else None).script(reader)
    _, result, _ = await run_rlm(fake_model, haystack(30_000), tmp_path)
    assert result.text == "The code is QX-7731." and result.notes["rlm"]["path"] == "fallback"


async def test_with_no_note_left_the_best_chunk_s_closest_lines_are_the_notes(fake_model, tmp_path):
    """The sub-model copies a real sentence, but not one about the question: it is dropped, and
    the answer call is given the lines of the best chunk that share the question's words."""

    def off_topic(name, messages):
        if not name.startswith("llm_query"):
            return None
        prompt = messages[-1]["content"]
        if is_answer_call(prompt):
            return prompt  # echo: the test sees what the answer call was given
        return prompt.strip().splitlines()[0]  # a log line, copied word for word

    fake_model.script(prose_root).script(off_topic)
    runner, result, _ = await run_rlm(fake_model, haystack(60_000), tmp_path, params={"fallback_after": 0})
    assert result.text.startswith(f"- {NEEDLE}")
    findings = next(s for s in steps_of(runner, result) if s["name"] == "fallback: findings")
    assert "dropped (not copied from their chunk, or off the question): ['2024-" in findings["output"]
    runner.close()
