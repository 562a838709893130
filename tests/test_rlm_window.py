"""rlm-v1 never overflows its models' windows: window lookup, token estimates, trimming."""

from __future__ import annotations

import pytest
from test_rlm import haystack, run_rlm

from composite_cli.config import Profile, Settings
from composite_cli.engine.rlm.window import Window, fit, message_tokens, preview, recent_turns
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.model_limits import FALLBACK_WINDOW, context_window, estimate_tokens, window_or_fallback
from composite_cli.runner import Runner

# -- the window, from LiteLLM's model map ------------------------------------------------------


def test_the_embedded_model_reports_its_real_window():
    assert context_window({"model": "local/smollm2"}) == 2048
    assert context_window({"model": "openai/gpt-4o-mini"}) == 128_000


def test_an_unknown_model_has_no_window_and_the_alias_falls_back_conservatively():
    assert context_window({"model": "openai/no-such-model-xyz"}) is None
    assert context_window({}) is None
    assert window_or_fallback([{"model": "openai/no-such-model-xyz"}]) == (FALLBACK_WINDOW, False)
    # an alias with fallbacks: the smallest window among its models, so text fits them all
    assert window_or_fallback([{"model": "openai/gpt-4o-mini"}, {"model": "local/smollm2"}]) == (2048, True)


@pytest.mark.parametrize(
    ("text", "at_least"),
    [
        ("2024-03-11 10:07:07", 17),  # digits and separators are a token each in small vocabularies
        ("The committee met on Tuesday to review the budget.", 10),
        ("", 0),
    ],
)
def test_token_estimates_read_high(text, at_least):
    assert estimate_tokens(text) >= at_least


# -- trimming ----------------------------------------------------------------------------------


def test_fit_cuts_with_a_marker_to_the_budget():
    text = "word " * 2000
    cut = fit(text, 300)
    assert estimate_tokens(cut) <= 300 and "[... truncated" in cut
    assert fit("short", 300) == "short"


def test_preview_shrinks_to_the_room_it_has():
    text = haystack(30_000)
    head, tail = preview(text, 10_000)
    assert len(head) == len(tail) == 600 and tail.endswith("Lyon warehouse?")
    head, tail = preview(text, 100)
    assert estimate_tokens(head) + estimate_tokens(tail) <= 100 and text.startswith(head)


def test_recent_turns_keep_the_latest_cut_to_fit_and_drop_older_ones():
    turns = []
    for i in range(6):
        turns += [
            {"role": "assistant", "content": f"turn {i}\n```repl\nprint(x)\n```"},
            {"role": "user", "content": f"REPL output:\n{i}" + " 123456789" * 300},
        ]
    kept = recent_turns(turns, 500, max_pairs=4)
    assert sum(message_tokens(m) for m in kept) <= 500
    assert [m["role"] for m in kept] == ["assistant", "user"] and kept[0]["content"].startswith("turn 5")
    assert "[... truncated" in kept[1]["content"]
    roomy = recent_turns(turns, 100_000, max_pairs=4)
    assert len(roomy) == 8 and roomy[0]["content"].startswith("turn 2")


def test_the_root_reply_is_a_small_share_of_a_small_window():
    assert Window.for_root(2048, True, 1024).reply_tokens == 256
    assert Window.for_root(128_000, True, 1024).reply_tokens == 1024
    assert Window.for_root(2048, True, None).prompt_tokens == int((2048 - 256) * 0.9)


# -- end to end: every root request fits a 2,048-token window ----------------------------------------

SMALL = Profile("small-window", {"*": {"model": "local/smollm2"}})


async def test_every_root_turn_fits_the_embedded_models_window(fake_model, tmp_path):
    """A root that prints 4,000 characters a turn for 6 turns: each request still fits 2,048 tokens."""

    turns = iter(range(1, 100))

    def root(name, messages):
        if not name.startswith("root"):
            return None
        turn = next(turns)
        return "FINAL(done)" if turn == 6 else f"turn {turn}\n```repl\nprint(context[{turn}:4000])\n```"

    fake_model.script(root)
    runner, result, _ = await run_rlm(fake_model, haystack(60_000), tmp_path, profile=SMALL)
    roots = [r for r in fake_model.requests if r["metadata"]["composite_call"].startswith("root")]
    assert len(roots) == 6 and result.text == "done"
    for request in roots:
        used = sum(message_tokens(m) for m in request["messages"])
        assert used + request["max_tokens"] <= 2048, (used, request["max_tokens"])
        assert request["max_tokens"] == 256
    # the latest output is shown, cut; the system prompt carries the worked example
    last = roots[-1]["messages"]
    assert "[... truncated" in last[-1]["content"] and "Example." in last[0]["content"]
    steps = runner.store.run_steps(result.run_id)
    notes = next(s["scratchpad"] for s in steps if s["kind"] == "rlm")
    assert "root window: 2048 tokens (from the model map)" in notes
    runner.close()


def asks_once(code: str):
    """A root that runs `code` once, then answers."""

    def root(name, messages):
        if not name.startswith("root"):
            return None
        if any(m["role"] == "assistant" for m in messages):
            return "FINAL(ok)"
        return f"```repl\n{code}\n```"

    return root


async def test_sub_call_replies_are_shortened_to_fit_the_window(fake_model, tmp_path):
    fake_model.script(asks_once("print(llm_query(context[:2000]))"))
    runner = Runner(Settings(profile=SMALL, db_path=tmp_path / "t.db"))
    mode = parse_mode(
        "name: rlm-test\nsteps:\n  - {id: answer, kind: rlm, model: root, sub_model: sub, sub_max_tokens: 1500}\n"
    )
    await runner.run(mode, RunRequest(messages=[{"role": "user", "content": haystack(20_000)}]))
    runner.close()
    sub = fake_model.request("llm_query")
    prompt = sub["messages"][0]["content"]
    assert estimate_tokens(prompt) + sub["max_tokens"] <= 2048 and sub["max_tokens"] < 1500


async def test_sub_call_replies_are_capped_on_a_small_window(fake_model, tmp_path):
    fake_model.script(asks_once("print(llm_query('Say hi.'))"))
    await run_rlm(fake_model, haystack(20_000), tmp_path, profile=SMALL)
    assert fake_model.request("llm_query")["max_tokens"] == 256  # 2048 / 8, though no max was set
