"""rlm: kept REPLs across the turns of one conversation (`persist: true` and a session id; issue 15).
Scripted root models; no wall-clock asserts (the idle timeout is checked by its timer, not by waiting)."""

from __future__ import annotations

import asyncio
import os

import pytest

from composite_cli.config import Profile, Settings
from composite_cli.engine.rlm import kept as kept_module
from composite_cli.engine.rlm.kept import KEPT, KeptRepls
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.errors import BadParameter
from composite_cli.runner import Runner

PROFILE = Profile("scripted", {"*": {"model": "openai/fake"}})
MODE = """\
name: kept
params:
  session: ""
  session_idle: 600.0
steps:
  - {id: answer, kind: rlm, model: root, sub_model: sub, persist: true, session: $session,
     session_idle: $session_idle}
"""


@pytest.fixture(autouse=True)
async def no_kept_repls():
    yield
    await KEPT.close_all()


def root_by_question(replies: dict[str, str], told: list[str]):
    """A root model that answers by the question in its context."""

    def respond(name, messages):
        if not name.startswith("root"):
            return None
        first = str(messages[1]["content"])
        told.append(first)
        turn = sum(1 for m in messages if m["role"] == "assistant")
        for question, code in replies.items():
            if question in first:
                return f"```repl\n{code}\n```" if turn == 0 else "FINAL(gave up)"
        return "FINAL(unknown question)"

    return respond


async def turn(runner, content, params=None, user=None, mode=MODE):
    return await runner.run(
        parse_mode(mode),
        RunRequest(messages=[{"role": "user", "content": content}], params=params or {}, user=user),
    )


def key(session, user=""):
    return ("kept", "answer", user, session)


REPLIES = {
    "Remember seven": 'x = 7\nanswer = {"content": "remembered", "ready": True}',
    "What did I say": (
        "try:\n    got = f'{x} (turn 1 asked: {context_0.strip()})'\nexcept NameError:\n    got = 'nothing'\n"
        'answer = {"content": got, "ready": True}'
    ),
}


async def test_a_follow_up_turn_sees_the_variables_of_the_last(fake_model, tmp_path):
    told: list[str] = []
    fake_model.script(root_by_question(REPLIES, told))
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    first = await turn(runner, "Remember seven.", {"session": "chat-1"})
    assert first.text == "remembered"
    assert first.notes["rlm"]["session"] == {"id": "chat-1", "turn": 1, "continued": False}
    pid = KEPT.get(key("chat-1")).sandbox.pid
    second = await turn(runner, "What did I say?", {"session": "chat-1"})
    assert second.text == "7 (turn 1 asked: Remember seven.)"
    assert second.notes["rlm"]["session"] == {"id": "chat-1", "turn": 2, "continued": True}
    assert KEPT.get(key("chat-1")).sandbox.pid == pid  # the same REPL process
    # the root is told that the REPL continues, and which variables it holds
    assert "continues this conversation" in told[-1] and "variables from earlier turns: x." in told[-1]
    # the trace says which session the run continued
    runner.flush()
    step = next(s for s in runner.store.run_steps(second.run_id) if s["kind"] == "rlm")
    assert "session 'chat-1': turn 2, continues the kept REPL" in step["scratchpad"]
    runner.close()


async def test_sessions_are_apart_by_id_and_by_caller(fake_model, tmp_path):
    told: list[str] = []
    fake_model.script(root_by_question(REPLIES, told))
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    await turn(runner, "Remember seven.", {"session": "chat-1"}, user="alice")
    assert (await turn(runner, "What did I say?", {"session": "chat-2"}, user="alice")).text == "nothing"
    assert (await turn(runner, "What did I say?", {"session": "chat-1"}, user="bob")).text == "nothing"
    assert (await turn(runner, "What did I say?", {"session": "chat-1"}, user="alice")).text.startswith("7")
    runner.close()


async def test_without_a_session_id_nothing_is_kept(fake_model, tmp_path):
    told: list[str] = []
    fake_model.script(root_by_question(REPLIES, told))
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    result = await turn(runner, "Remember seven.")
    assert "session" not in result.notes["rlm"] and len(KEPT) == 0
    assert (await turn(runner, "What did I say?")).text == "nothing"
    # nor with the shipped rlm-v1 when the request names no session
    await runner.run("rlm-v1", RunRequest(messages=[{"role": "user", "content": "Remember seven."}]))
    assert len(KEPT) == 0
    runner.close()


async def test_the_shipped_rlm_v1_keeps_a_named_session(fake_model, tmp_path):
    told: list[str] = []
    fake_model.script(root_by_question(REPLIES, told))
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    asked = {"session": "chat-9"}
    first = await runner.run(
        "rlm-v1", RunRequest(messages=[{"role": "user", "content": "Remember seven."}], params=asked)
    )
    assert first.notes["rlm"]["session"] == {"id": "chat-9", "turn": 1, "continued": False}
    second = await runner.run(
        "rlm-v1", RunRequest(messages=[{"role": "user", "content": "What did I say?"}], params=asked)
    )
    assert second.notes["rlm"]["session"]["continued"] is True
    assert second.text.startswith("7")
    runner.close()


async def test_an_idle_session_is_closed_and_leaves_no_process(fake_model, tmp_path):
    told: list[str] = []
    fake_model.script(root_by_question(REPLIES, told))
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    await turn(runner, "Remember seven.", {"session": "chat-1", "session_idle": 30.0})
    kept = KEPT.get(key("chat-1"))
    pid = kept.sandbox.pid
    os.kill(pid, 0)  # alive between turns
    loop = asyncio.get_running_loop()
    assert kept.timer is not None and 29 < kept.timer.when() - loop.time() <= 30
    kept.timer._run()  # the idle timeout fires (its callback, without waiting 30 s)
    await asyncio.gather(*kept_module._closing)
    assert KEPT.get(key("chat-1")) is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert (await turn(runner, "What did I say?", {"session": "chat-1"})).text == "nothing"
    runner.close()


async def test_a_failed_turn_leaves_no_kept_repl(fake_model, tmp_path):
    Reply = type(fake_model.default)

    def root(name, messages):
        if not name.startswith("root"):
            return None
        if any(m["role"] == "assistant" for m in messages):
            return Reply(error=RuntimeError("provider down"))
        return "```repl\nx = 1\n```"

    fake_model.script(root)
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    with pytest.raises(RuntimeError, match="provider down"):
        await turn(runner, "Remember seven.", {"session": "chat-1"})
    assert len(KEPT) == 0
    runner.close()


async def test_a_bad_session_id_is_a_400_naming_the_field(fake_model, tmp_path):
    runner = Runner(Settings(profile=PROFILE, db_path=tmp_path / "t.db"))
    for bad in ("has space", "x" * 129, "../etc"):
        with pytest.raises(BadParameter) as exc:
            await turn(runner, "Remember seven.", {"session": bad})
        assert exc.value.param == "composite.params.session" and "1 to 128 letters" in str(exc.value)
    assert len(KEPT) == 0
    runner.close()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("persist: false, session: abc", "session: needs `persist: true`"),
        ("persist: true, session: $nope", "'$nope' is not a text parameter"),
        ("persist: true, session: $n", "'$n' is not a text parameter (text parameters: s)"),
        ("persist: true, session: 'a b'", "session: must be 1 to 128 letters"),
        ("persist: true, session_idle: 0", "session_idle"),
    ],
)
def test_session_fields_are_checked_in_the_mode_file(step, message):
    text = f"name: t\nparams: {{s: '', n: 1}}\nsteps:\n  - {{id: r, kind: rlm, model: m, {step}}}\n"
    with pytest.raises(
        Exception, match="(?s)" + message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")
    ):
        parse_mode(text)


class StubSandbox:
    def __init__(self):
        self.closed = False
        self.usable = True

    async def close(self):
        self.closed = True

    def abandon(self):
        self.closed = True


async def test_kept_repls_are_capped_the_least_recently_used_idle_one_goes():
    repls = KeptRepls(max_kept=2)
    a, b, c = StubSandbox(), StubSandbox(), StubSandbox()
    ka = repls.keep(("m", "s", "", "a"), a, 1)
    kb = repls.keep(("m", "s", "", "b"), b, 1)
    assert repls.keep(("m", "s", "", "c"), c, 1) is None  # both busy: the third is not kept
    repls.release(ka, 60)
    repls.release(kb, 60)
    assert repls.keep(("m", "s", "", "c"), c, 1) is not None
    await asyncio.gather(*kept_module._closing)
    assert a.closed and not b.closed and len(repls) == 2
    # a second request in a busy session is refused, naming the field
    kc = repls.get(("m", "s", "", "c"))
    assert kc is not None and kc.busy
    with pytest.raises(BadParameter, match="answering another request"):
        repls.take(("m", "s", "", "c"), 1, "composite.params.session")
    # a turn with other REPL limits starts a new REPL
    taken, why = repls.take(("m", "s", "", "b"), 2, "composite.params.session")
    assert taken is None and "limits changed" in why
    await repls.close_all()
    assert b.closed and c.closed and len(repls) == 0


async def test_set_variables_reaches_the_running_repl_and_a_restarted_one():
    import signal

    from composite_cli.sandbox import Sandbox

    async with Sandbox() as sb:
        await sb.start({"context": "first"})
        await sb.execute("kept = 1")
        await sb.set_variables({"context": "second", "context_length": 6})
        result = await sb.execute("print(context, context_length, kept)")
        assert result.output.strip() == "second 6 1"
        with pytest.raises(ValueError, match="reserved"):
            await sb.set_variables({"llm_query": "x"})
        os.killpg(sb.pid, signal.SIGKILL)  # the REPL dies: the next one starts with the latest variables
        result = await sb.execute("print(1)")
        result = await sb.execute("print(context)")
        assert result.output.strip() == "second"
