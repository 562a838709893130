"""The trace store: migrations, the run/step tree written for a run, WAL, permissions."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest
import sqlite_utils

from composite_cli.config import Profile, Settings
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.runner import Runner
from composite_cli.traces.migrations import MIGRATIONS, apply_migrations
from composite_cli.traces.store import RunNotFound, TraceStore, TraceStoreError

USER = [{"role": "user", "content": "Capital of France?"}]


def test_migrations_run_on_an_empty_database_and_only_once(tmp_path):
    db = sqlite_utils.Database(tmp_path / "t.db")
    applied = apply_migrations(db)
    assert applied == [name for name, _ in MIGRATIONS]
    assert {"runs", "steps", "_migrations"} <= set(db.table_names())
    assert apply_migrations(db) == []
    fks = {(fk.column, fk.other_table) for fk in db.table("steps").foreign_keys}
    assert ("run_id", "runs") in fks and ("parent_id", "steps") in fks
    expected = {
        "id",
        "run_id",
        "parent_id",
        "kind",
        "name",
        "model",
        "status",
        "started_at",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "request_json",
        "response_json",
        "scratchpad",
        "error",
    }
    assert expected <= set(db.table("steps").columns_dict)
    expected_runs = {
        "id",
        "created_at",
        "mode",
        "source",
        "user",
        "status",
        "input",
        "output",
        "calls",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
        "error",
    }
    assert expected_runs <= set(db.table("runs").columns_dict)


def test_database_is_wal_and_private(tmp_path):
    store = TraceStore(tmp_path / "sub" / "traces.db").open()
    store.close()
    path = tmp_path / "sub" / "traces.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_unwritable_database_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TraceStoreError, match="cannot open trace database"):
        TraceStore(blocker / "traces.db").open()


async def test_a_moa_run_writes_its_step_tree(fake_model, tmp_path):
    settings = Settings(
        profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=tmp_path / "t.db"
    )
    runner = Runner(settings)
    fake_model.on("answer", "Paris")
    result = await runner.run("moa", RunRequest(messages=USER, source="chat", user="ann"))
    runner.flush()
    run = runner.store.get_run(result.run_id)
    assert run["status"] == "ok" and run["mode"] == "moa-v1" and run["source"] == "chat"
    assert run["user"] == "ann" and run["input"] == "Capital of France?" and run["output"] == "Paris"
    assert run["calls"] == 4 and run["cost_usd"] == pytest.approx(result.cost_usd)
    steps = runner.store.run_steps(result.run_id)
    by_name = {s["name"]: s for s in steps}
    assert {"proposals", "analyst", "teacher", "skeptic", "layers", "answer"} <= set(by_name)
    proposals = by_name["proposals"]
    assert proposals["kind"] == "fanout" and proposals["parent_id"] is None
    for expert in ("analyst", "teacher", "skeptic"):
        row = by_name[expert]
        assert row["kind"] == "llm" and row["parent_id"] == proposals["id"] and row["depth"] == 1
        assert row["model"] == "openai/gpt-4o-mini" and row["status"] == "ok"
        assert row["prompt_tokens"] > 0 and row["latency_ms"] >= 0
        assert '"messages"' in row["request_json"] and "Paris" not in (row["output"] or "x")
    # step rows sum their children
    kids = [s for s in steps if s["parent_id"] == proposals["id"]]
    assert proposals["prompt_tokens"] == sum(k["prompt_tokens"] for k in kids)
    assert proposals["cost_usd"] == pytest.approx(sum(k["cost_usd"] for k in kids))
    llm_answer = next(s for s in steps if s["kind"] == "llm" and s["name"] == "answer")
    assert llm_answer["output"] == "Paris"
    assert sum(s["prompt_tokens"] for s in steps if s["kind"] == "llm") == run["prompt_tokens"]
    runner.close()


async def test_failed_run_and_failed_step_are_recorded(fake_model, tmp_path):
    import litellm

    settings = Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    runner = Runner(settings)
    fake_model.on("answer", error=litellm.APIConnectionError("network down", "openai", "x"))
    with pytest.raises(litellm.APIConnectionError):
        await runner.run("direct", RunRequest(messages=USER))
    runner.flush()
    run = runner.store.list_runs(1)[0]
    assert run["status"] == "error" and "APIConnectionError" in run["error"]
    steps = runner.store.run_steps(run["id"])
    assert {s["status"] for s in steps} == {"error"}
    runner.close()


async def test_tracing_off_writes_nothing(fake_model, tmp_path):
    settings = Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    runner = Runner(settings, trace=False)
    await runner.run("direct", RunRequest(messages=USER))
    assert not (tmp_path / "t.db").exists()


async def test_no_content_mode_keeps_metadata_only(fake_model, tmp_path):
    settings = Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    runner = Runner(settings, content=False)
    result = await runner.run("direct", RunRequest(messages=USER))
    runner.flush()
    run = runner.store.get_run(result.run_id)
    assert run["input"] is None and run["output"] is None and run["calls"] == 1
    for step in runner.store.run_steps(result.run_id):
        assert "Capital" not in (step["request_json"] or "") and step["output"] is None
    runner.close()


def test_unknown_run_id(tmp_path):
    store = TraceStore(tmp_path / "t.db").open()
    with pytest.raises(RunNotFound):
        store.get_run("nope")
    store.close()


def test_shipped_modes_all_load():
    library = ModeLibrary()
    assert {"direct", "moa-v1", "reflect-v1", "moa-reflect-v1"} <= set(library.names())
    for name in library.names():
        assert library.load(name).steps


def test_runs_left_running_by_a_dead_process_are_marked_at_start_up(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "t.db"
    store = TraceStore(path).open()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    store.begin_run({"id": "r-dead", "status": "running", "pid": dead_pid, "mode": "m", "created_at": "x"})
    store.start_step({"id": "s-dead", "run_id": "r-dead", "status": "running", "kind": "llm"})
    store.begin_run({"id": "r-live", "status": "running", "pid": os.getpid(), "mode": "m", "created_at": "x"})
    store._write_row("eval_runs", {"id": "e-dead", "status": "running", "pid": dead_pid})
    store.close()
    reopened = TraceStore(path).open()
    assert reopened.get_run("r-dead")["status"] == "error"
    assert f"pid {dead_pid}" in reopened.get_run("r-dead")["error"]
    assert reopened.run_steps("r-dead")[0]["status"] == "error"
    assert reopened.get_run("r-live")["status"] == "running"  # its process is alive
    with reopened.reader() as db:
        assert db.execute("select status from eval_runs where id = 'e-dead'").fetchone()[0] == "interrupted"
    reopened.close()


def test_a_driver_error_while_reading_is_the_store_error(tmp_path):
    """Readers never see sqlite3.Error: `reader()` turns it into TraceStoreError (issue 14)."""
    import sqlite3

    from composite_cli.traces.reader import TraceReader
    from composite_cli.traces.store import TraceStoreUnreadable

    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a SQLite file without the trace schema
    with pytest.raises(TraceStoreUnreadable, match="no such table: runs") as caught:
        TraceReader(path).runs()
    assert isinstance(caught.value, TraceStoreError) and caught.value.reason == "no such table: runs"
    with pytest.raises(TraceStoreError, match="no trace database"):
        TraceReader(tmp_path / "missing.db").mode_stats()


def test_a_driver_error_in_the_call_cache_is_the_store_error(tmp_path):
    import sqlite3

    from composite_cli.traces.cache import CallCache

    store = TraceStore(tmp_path / "t.db")
    cache = CallCache(store)
    conn = sqlite3.connect(store.path)
    conn.execute("drop table call_cache")  # a damaged file
    conn.close()
    with pytest.raises(TraceStoreError, match=r"call cache.*no such table: call_cache"):
        cache.get(CallCache.key({"model": "m"}))
    cache.close()
    store.close()
