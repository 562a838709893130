"""Reliability: injected faults, fallbacks, retries, cancellation, huge and odd inputs, secrets."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import composite_cli
from composite_cli.cli.main import app
from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.errors import BadRequest, FanoutFailed
from composite_cli.runner import Runner

USER = [{"role": "user", "content": "What is the capital of France?"}]


def runner_for(tmp_path: Path, aliases: dict, **kw) -> Runner:
    return Runner(Settings(profile=Profile("p", aliases), db_path=tmp_path / "t.db"), **kw)


def steps(runner: Runner, run_id: str) -> list[dict]:
    runner.flush()
    return runner.store.run_steps(run_id)


# -- faults in providers -------------------------------------------------------------------------

CHAOS = {
    "fast": {
        "model": "faulty/expert",
        "fault_rate": 0.2,
        "fault": "server_error",
        "fault_seed": 7,
        "answer": "Paris",
    },
    "*": {"model": "openai/gpt-4o-mini", "mock_response": "Paris"},
}


async def test_moa_answers_while_a_fifth_of_expert_calls_fail(tmp_path):
    runner = runner_for(tmp_path, CHAOS)
    answered_despite_failures = 0
    for _ in range(20):
        try:
            result = await runner.run("moa-v1", RunRequest(messages=USER))
        except FanoutFailed:
            result = None
        runner.flush()
        run = runner.store.list_runs(1)[0]
        experts = [
            s for s in runner.store.run_steps(run["id"]) if s["kind"] == "llm" and s["name"] != "answer"
        ]
        failed = [s for s in experts if s["status"] == "error"]
        for step in failed:  # every failure is a recorded step with its error
            assert "InternalServerError" in step["error"] and "injected server_error fault" in step["error"]
        # min_success is 2 of 3: the run answers exactly when at most one expert failed
        assert (result is not None) == (len(failed) <= 1), (run["status"], len(failed))
        if result is not None:
            assert result.text == "Paris" and run["status"] == "ok"
            answered_despite_failures += bool(failed)
        else:
            assert run["status"] == "error" and "min_success is 2" in run["error"]
    assert answered_despite_failures >= 3
    runner.close()


async def test_fallback_models_per_alias_are_tried_in_order(tmp_path):
    aliases = {
        "strong": [
            {"model": "faulty/primary", "fault_rate": 1.0, "fault": "rate_limit"},
            {"model": "faulty/backup", "fault_rate": 0.0, "answer": "from the backup"},
        ],
    }
    runner = runner_for(tmp_path, aliases)
    result = await runner.run("direct", RunRequest(messages=USER))
    assert result.text == "from the backup"
    call = next(s for s in steps(runner, result.run_id) if s["kind"] == "llm")
    assert call["model"] == "faulty/backup"
    fallbacks = json.loads(call["response_json"])["fallbacks"]
    assert fallbacks == [
        {
            "model": "faulty/primary",
            "error": "RateLimitError: injected rate_limit fault",
        }
    ]
    runner.close()


async def test_retries_follow_the_step_policy_and_are_recorded(tmp_path):
    modes = tmp_path / "modes"
    modes.mkdir()
    (modes / "retrying.yaml").write_text(
        "name: retrying\nsteps:\n  - {id: answer, kind: call, model: strong, retries: 3, backoff: 0.01}\n",
        encoding="utf-8",
    )
    aliases = {"strong": {"model": "faulty/flaky", "fault_rate": 0.5, "fault_seed": 3, "answer": "ok"}}
    runner = Runner(Settings(profile=Profile("p", aliases), db_path=tmp_path / "t.db", modes_path=(modes,)))
    retried = 0
    for _ in range(6):
        result = await runner.run("retrying", RunRequest(messages=USER))
        call = next(s for s in steps(runner, result.run_id) if s["kind"] == "llm")
        retried += call["retries"] or 0
        assert result.text == "ok"
    assert retried > 0
    runner.close()


async def test_a_failed_final_step_is_a_litellm_error_not_an_answer(tmp_path):
    import litellm

    aliases = {"strong": {"model": "faulty/down", "fault_rate": 1.0, "fault": "server_error"}}
    composite_cli.register(settings=Settings(profile=Profile("p", aliases), db_path=tmp_path / "t.db"))
    with pytest.raises(litellm.InternalServerError):
        await litellm.acompletion(model="composite/direct", messages=USER)


def _final_status(handler, timeout: float = 60.0) -> dict:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        handler.runner.flush()
        rows = handler.runner.store.list_runs(1) if handler.runner.store.path.exists() else []
        if rows and rows[0]["status"] != "running":
            return rows[0]
        time.sleep(0.05)
    raise AssertionError("the run never got a final status")


def test_an_abandoned_stream_cancels_the_run_and_its_calls(fake_model, tmp_path):

    handler = composite_cli.register(
        settings=Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    )
    fake_model.on("answer", "a long streamed answer " * 100, chunk_delay=0.02)
    stream = handler.streaming(
        model="moa-v1", messages=USER, optional_params={}, logging_obj=None, model_response=None
    )
    first = [next(stream)["text"] for _ in range(3)]
    assert "".join(first)
    stream.close()  # the caller walks away mid-answer (the rest would take 12 s more)
    run = _final_status(handler)
    assert run["status"] == "cancelled"
    answer = next(
        s for s in handler.runner.store.run_steps(run["id"]) if s["kind"] == "llm" and s["name"] == "answer"
    )
    assert answer["status"] == "cancelled", "the rest of the answer was generated"


async def test_an_abandoned_async_stream_cancels_the_run(fake_model, tmp_path):
    handler = composite_cli.register(
        settings=Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    )
    fake_model.on("analyst", "slow", delay=5.0)
    stream = handler.astreaming(
        model="moa-v1", messages=USER, optional_params={}, logging_obj=None, model_response=None
    )
    first = await stream.__anext__()  # the stream starts when the run does: the role chunk
    assert first["text"] == ""
    reader = asyncio.create_task(stream.__anext__())
    await asyncio.sleep(0.3)
    reader.cancel()  # e.g. the HTTP client disconnected while the proposers were running
    with pytest.raises(asyncio.CancelledError):
        await reader
    await stream.aclose()
    run = await asyncio.to_thread(_final_status, handler)
    assert run["status"] == "cancelled"
    analyst = next(s for s in handler.runner.store.run_steps(run["id"]) if s["name"] == "analyst")
    assert analyst["status"] == "cancelled"


# -- bad and huge input ----------------------------------------------------------------------------


async def test_huge_inputs_are_refused_or_kept_within_limits(fake_model, fake_profile, tmp_path):
    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "t.db"))
    big = "x" * 10_000_000
    result = await runner.run("direct", RunRequest(messages=[{"role": "user", "content": big}]))
    size = (tmp_path / "t.db").stat().st_size + (tmp_path / "t.db-wal").stat().st_size
    assert size < 2_000_000, "a 10 MB input is clipped in the trace, not stored whole"
    assert len(fake_model.requests[0]["messages"][0]["content"]) == 10_000_000  # the model got it all
    assert result.status == "ok"
    with pytest.raises(BadRequest, match="too many messages: 10000"):
        await runner.run("direct", RunRequest(messages=[{"role": "user", "content": "hi"}] * 10_000))
    deep = "[" * 5000 + "]" * 5000
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": ' + deep + "}"}}
    with pytest.raises(BadRequest, match="nested"):
        await runner.run(
            "direct",
            RunRequest(messages=[*USER, {"role": "assistant", "content": None, "tool_calls": [call]}]),
        )
    with pytest.raises(BadRequest, match="limit is"):
        await runner.run("direct", RunRequest(messages=[{"role": "user", "content": "y" * 17_000_000}]))
    runner.close()


UNICODE = "Ünïcødé ✓ 数学 עברית 🧠🐍 \u200b zero-width, e\u0301 combining, \U0001f468\u200d\U0001f469\u200d\U0001f467"


async def test_unicode_survives_traces_and_reports(fake_model, tmp_path):
    fake_model.default.content = f"Answer: {UNICODE}"
    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db"))
    result = await runner.run("moa", RunRequest(messages=[{"role": "user", "content": UNICODE}]))
    runner.flush()
    run = runner.store.get_run(result.run_id)
    assert run["input"] == UNICODE and run["output"] == f"Answer: {UNICODE}"
    for step in runner.store.run_steps(result.run_id):
        if step["kind"] == "llm":
            assert json.loads(step["request_json"])["messages"][-1]["content"] == UNICODE
            assert step["output"] == f"Answer: {UNICODE}"
    runner.close()


def test_unicode_survives_the_eval_report(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text(
        json.dumps(
            {"id": "ü-1", "input": UNICODE, "expected": UNICODE, "scorer": "contains"}, ensure_ascii=False
        )
        + "\n",
        encoding="utf-8",
    )
    (tmp_path / "composite.yaml").write_text(
        'profile: p\nprofiles:\n  p:\n    "*": {model: openai/x, mock_response: '
        + json.dumps(f"Answer: {UNICODE}", ensure_ascii=False)
        + "}\n",
        encoding="utf-8",
    )
    out = CliRunner().invoke(
        app,
        [
            "eval",
            str(path),
            "--config",
            str(tmp_path / "composite.yaml"),
            "--db",
            str(tmp_path / "t.db"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["modes"][0]["score"] == 1.0
    db = sqlite3.connect(tmp_path / "t.db")
    assert db.execute("select input from eval_results where case_id = 'ü-1'").fetchone()[0] == UNICODE


async def test_lone_surrogates_and_undecodable_bytes_are_replaced_not_fatal(
    fake_model, fake_profile, tmp_path
):
    broken = b"caf\xe9 \xff".decode("utf-8", "surrogateescape") + " \ud83e alone"
    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "t.db"))
    result = await runner.run("direct", RunRequest(messages=[{"role": "user", "content": broken}]))
    runner.flush()
    stored = runner.store.get_run(result.run_id)["input"]
    assert stored == "caf\ufffd \ufffd \ufffd alone"
    assert fake_model.requests[0]["messages"][0]["content"] == stored
    runner.close()


# -- secrets -------------------------------------------------------------------------------------------

SECRET = "sk-live-test-0123456789abcdefSECRET"


def test_api_keys_never_reach_traces_logs_or_output(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-master-9876543210zyxwv")
    config = tmp_path / "composite.yaml"
    config.write_text(
        "profile: keyed\nprofiles:\n  keyed:\n"
        f'    fast: {{model: faulty/x, fault_rate: 1.0, fault: bad_request, api_key: "{SECRET}"}}\n'
        f'    "*": {{model: openai/gpt-4o-mini, mock_response: "Paris", api_key: "{SECRET}",'
        f' extra_headers: {{Authorization: "Bearer {SECRET}"}}}}\n',
        encoding="utf-8",
    )
    db = tmp_path / "t.db"
    cli = CliRunner()
    outputs = []
    for args in (
        ["chat", "-m", "direct", "--json", "--trace", "hello"],
        ["chat", "-m", "moa", "hello"],  # every proposer fails: an error that names the provider
        ["models", "--json"],
        ["models"],
    ):
        result = cli.invoke(
            app,
            [*args, "--config", str(config), "--db", str(db)]
            if args[0] != "models"
            else [*args, "--config", str(config)],
        )
        outputs.append(result.output)
    evals = tmp_path / "e.jsonl"
    evals.write_text(
        json.dumps({"input": "hi", "expected": "Paris", "scorer": "contains"}) + "\n", encoding="utf-8"
    )
    outputs.append(
        cli.invoke(app, ["eval", str(evals), "--config", str(config), "--db", str(db), "--json"]).output
    )
    for text in outputs:
        assert SECRET not in text and "sk-master-9876543210zyxwv" not in text
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert SECRET not in dump and "Bearer" not in dump.replace("Bearer [REDACTED]", "")
    assert "[REDACTED]" in dump  # the key was there, masked


def test_the_trace_db_is_created_private(tmp_path):
    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "p.db"))
    runner.store.open()
    import stat

    assert stat.S_IMODE((tmp_path / "p.db").stat().st_mode) == 0o600
    runner.close()


async def test_no_content_stores_metadata_only(fake_model, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text('no_content: true\nprofiles:\n  p:\n    "*": {model: openai/x}\n', encoding="utf-8")
    from composite_cli.config import load_settings

    settings = load_settings(config=config, profile="p", db=tmp_path / "t.db")
    assert settings.no_content
    runner = Runner(settings)
    result = await runner.run("moa", RunRequest(messages=[{"role": "user", "content": "secret plans"}]))
    runner.flush()
    dump = "\n".join(sqlite3.connect(tmp_path / "t.db").iterdump())
    assert "secret plans" not in dump and "fake answer" not in dump
    assert runner.store.get_run(result.run_id)["calls"] == 4
    runner.close()


def test_concurrent_cancellation_leaves_one_final_status_per_run(fake_model, tmp_path):
    fake_model.default.delay = 0.3
    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db"))

    async def many():
        tasks = [asyncio.create_task(runner.run("moa", RunRequest(messages=USER))) for _ in range(10)]
        await asyncio.sleep(0.1)
        for task in tasks[::2]:
            task.cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(many())
    runner.flush()
    rows = (
        sqlite3.connect(tmp_path / "t.db")
        .execute("select status, count(*) from runs group by status")
        .fetchall()
    )
    assert dict(rows) == {"cancelled": 5, "ok": 5}
    assert sum(1 for r in results if isinstance(r, asyncio.CancelledError)) == 5
    runner.close()
