"""`composite traces`: list, show, export, merge, prune and browse, through Typer's CliRunner on
trace databases filled by running modes on the fake model."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
import typer
from typer.testing import CliRunner, Result

from composite_cli.cli.render import step_tree
from composite_cli.cli.traces import app, datasette_args
from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.evals.dataset import load_eval_file
from composite_cli.evals.runner import EvalRunner, EvalSettings
from composite_cli.runner import Runner
from composite_cli.traces.maintenance import parse_duration
from composite_cli.traces.migrations import MIGRATIONS
from composite_cli.traces.recorder import iso

USER = [{"role": "user", "content": "Capital of France?"}]


def invoke(*args: Any, input: str | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def one_error_line(result: Result) -> str:
    assert result.exit_code != 0 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def record(path: Path, fake_model: Any, *runs: tuple[str, str], error: bool = False) -> list[str]:
    """Run modes ((mode, source) pairs) on the fake model into `path`; with `error`, one more
    direct run that fails. Returns the run ids in order."""
    import litellm

    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=path))

    async def go() -> list[str]:
        ids = []
        for mode, source in runs:
            ids.append((await runner.run(mode, RunRequest(messages=USER, source=source))).run_id)
        if error:
            fake_model.on("answer", error=litellm.APIConnectionError("network down", "openai", "x"))
            with pytest.raises(litellm.APIConnectionError):
                await runner.run("direct", RunRequest(messages=USER, source="serve"))
            fake_model.by_name.clear()
            runner.flush()
            ids.append(runner.store.list_runs(1)[0]["id"])
        return ids

    try:
        ids = asyncio.run(go())
        runner.flush()
    finally:
        runner.close()
    return ids


def record_eval(path: Path) -> str:
    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=path))
    cases = path.parent / "cases.jsonl"
    cases.write_text(
        '{"id": "a", "input": "Capital of France?", "expected": "fake answer", "scorer": "contains"}\n'
        '{"id": "b", "input": "Capital of Italy?", "expected": "Rome", "scorer": "contains"}\n',
        encoding="utf-8",
    )

    async def go() -> str:
        eval_file = load_eval_file(cases)
        evals = EvalRunner(runner, EvalSettings(modes=["direct"]))
        eval_id = evals.start(eval_file, ["direct"])
        await evals.run(eval_file, eval_id)
        return eval_id

    try:
        eval_id = asyncio.run(go())
        runner.flush()
    finally:
        runner.close()
    return eval_id


def rows(path: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def count(path: Path, table: str) -> int:
    return int(rows(path, f"select count(*) as n from {table}")[0]["n"])


@pytest.fixture
def db(isolated_home: Path, fake_model: Any) -> tuple[Path, list[str]]:
    """./traces.db (the default database) with a direct chat run, a moa run and a failed run."""
    path = isolated_home / "traces.db"
    return path, record(path, fake_model, ("direct", "chat"), ("moa", "python"), error=True)


# -- help ---------------------------------------------------------------------------------------------


def test_every_command_and_option_has_help_text() -> None:
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="traces")
    names = group.list_commands(ctx)
    assert set(names) == {"list", "show", "export", "merge", "prune", "browse"}
    for name in names:
        command = group.get_command(ctx, name)
        assert (command.help or "").strip(), name
        for param in command.params:
            if param.name != "help":
                assert (getattr(param, "help", None) or "").strip(), (name, param.name)
        result = invoke(name, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout


# -- list -----------------------------------------------------------------------------------------------


def test_list_shows_recent_runs_newest_first(db) -> None:
    _, (direct, moa, failed) = db
    result = invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [failed, moa, direct]
    assert "moa-v1" in lines[1] and "ok" in lines[1] and "4 calls" in lines[1]
    assert "error" in lines[0] and "serve" in lines[0]
    assert lines[2].rstrip().endswith("Capital of France?")


def test_list_filters_and_json(db) -> None:
    _, (direct, moa, failed) = db
    as_json = json.loads(invoke("list", "--json").stdout)
    assert [r["id"] for r in as_json] == [failed, moa, direct]
    assert as_json[1]["mode"] == "moa-v1" and as_json[1]["calls"] == 4
    for args, expected in [
        (["--mode", "moa-v1"], [moa]),
        (["--status", "error"], [failed]),
        (["--source", "chat"], [direct]),
        (["--mode", "direct", "--status", "ok"], [direct]),
        (["--limit", "2"], [failed, moa]),
        (["--mode", "nope"], []),
    ]:
        found = json.loads(invoke("list", "--json", *args).stdout)
        assert [r["id"] for r in found] == expected, args
    empty = invoke("list", "--mode", "nope")
    assert empty.exit_code == 0 and empty.stdout == "" and "No runs match" in empty.stderr


def test_list_reads_the_database_from_config_and_flag(isolated_home: Path, fake_model: Any) -> None:
    elsewhere = isolated_home / "data" / "mine.db"
    (run_id,) = record(elsewhere, fake_model, ("direct", "chat"))
    assert invoke("list", "--db", elsewhere).stdout.startswith(run_id)
    config = isolated_home / "composite.yaml"
    config.write_text("db: data/mine.db\n", encoding="utf-8")
    assert invoke("list", "--config", config).stdout.startswith(run_id)
    assert invoke("list").stdout.startswith(run_id)  # ./composite.yaml is found by itself


def test_missing_database_is_one_error_line(isolated_home: Path) -> None:
    for args in (["list"], ["show", "latest"], ["export"], ["prune", "--older-than", "1d"], ["browse"]):
        line = one_error_line(invoke(*args))
        assert "no trace database at" in line and "traces.db" in line, args
    assert not (isolated_home / "traces.db").exists()  # reading never creates one


# -- show -----------------------------------------------------------------------------------------------


def test_show_prints_the_run_and_its_step_tree(db) -> None:
    path, (_, moa, _) = db
    result = invoke("show", moa)
    assert result.exit_code == 0, result.output
    run = rows(path, "select * from runs where id = ?", moa)[0]
    steps = rows(path, "select * from steps where run_id = ?", moa)
    assert result.stdout.startswith(step_tree(run, steps) + "\n")
    assert "├─ fanout proposals" in result.stdout and "│  ├─ llm analyst" in result.stdout
    assert "source python" in result.stdout and "input: Capital of France?" in result.stdout
    assert "output: fake answer" in result.stdout


def test_show_accepts_a_prefix_and_latest_and_prints_json(db) -> None:
    path, (_, moa, failed) = db
    assert invoke("show", moa[:-3]).stdout == invoke("show", moa).stdout
    latest = invoke("show", "latest")
    assert latest.stdout.startswith(f"run {failed}") and "error: APIConnectionError" in latest.stdout
    data = json.loads(invoke("show", moa, "--json").stdout)
    assert data["run"]["id"] == moa and data["run"]["mode"] == "moa-v1"
    assert len(data["steps"]) == count(path, f"steps where run_id = '{moa}'")
    assert all('"messages"' in s["request_json"] for s in data["steps"] if s["kind"] == "llm")


def test_show_unknown_or_ambiguous_run_is_one_error_line(db) -> None:
    _, ids = db
    assert "no run with id 'nope'" in one_error_line(invoke("show", "nope"))
    common = next(i for i in range(1, 40) if len({r[:i] for r in ids}) > 1) - 1
    assert common > 0  # ids from one process share a prefix
    line = one_error_line(invoke("show", ids[0][:common]))
    assert "ambiguous run id prefix" in line and all(i in line for i in ids)  # the candidates
    assert "ambiguous" in one_error_line(invoke("export", ids[0][:common]))


# -- export ----------------------------------------------------------------------------------------------


def test_export_writes_runs_with_their_steps_as_json_lines(db) -> None:
    path, (direct, moa, failed) = db
    result = invoke("export")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in lines] == [direct, moa, failed]  # oldest first
    for run in lines:
        stored = rows(path, "select * from steps where run_id = ? order by offset_ms, seq", run["id"])
        assert run["steps"] == stored
        assert {k: v for k, v in run.items() if k != "steps"} == rows(
            path, "select * from runs where id = ?", run["id"]
        )[0]
    assert result.stderr == ""


def test_export_by_id_filters_limit_and_output_file(db, isolated_home: Path) -> None:
    path, (direct, moa, failed) = db

    def exported(*args: str) -> list[str]:
        result = invoke("export", *args)
        assert result.exit_code == 0, result.output
        return [json.loads(line)["id"] for line in result.stdout.splitlines()]

    assert exported(moa) == [moa]
    assert exported(failed[:-2], direct) == [direct, failed]
    assert exported("--mode", "direct") == [direct, failed]
    assert exported("--status", "ok", "--source", "chat") == [direct]
    assert exported("--limit", "2") == [moa, failed]  # the newest two, oldest first
    assert exported("--mode", "moa-v1", direct) == []
    result = invoke("export", "--output", "out/runs.jsonl", "--mode", "moa-v1")
    assert "Error" in result.stderr  # out/ does not exist
    (isolated_home / "out").mkdir()
    result = invoke("export", "-o", "out/runs.jsonl", "--mode", "moa-v1")
    assert result.exit_code == 0 and result.stdout == ""
    steps = count(path, f"steps where run_id = '{moa}'")
    assert result.stderr.strip() == f"Exported 1 runs ({steps} steps) to out/runs.jsonl"
    lines = (isolated_home / "out" / "runs.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == moa
    assert "no run with id" in one_error_line(invoke("export", "zzz"))


# -- merge -----------------------------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_merge_combines_files_without_duplicates(isolated_home: Path, fake_model: Any) -> None:
    a, b, into = isolated_home / "a.db", isolated_home / "b.db", isolated_home / "all.db"
    shared = record(a, fake_model, ("direct", "chat"), ("moa", "serve"))
    eval_id = record_eval(a)
    shutil.copy(a, b)  # b starts as a copy of a (overlapping runs), then gets its own runs
    only_b = record(b, fake_model, ("reflect", "serve"), ("direct", "serve"))
    conn = sqlite3.connect(b)
    conn.execute("update runs set output = 'newer' where id = ?", [shared[0]])
    conn.commit()
    conn.close()
    before = {a: digest(a), b: digest(b)}

    result = invoke("merge", a, b, "--into", into)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Merged 2 files into {into}")
    all_runs = {r["id"] for r in rows(b, "select id from runs")}
    assert {r["id"] for r in rows(into, "select id from runs")} == all_runs
    assert set(shared) | set(only_b) <= all_runs
    for table in ("runs", "steps", "eval_runs", "eval_results", "call_cache"):
        assert count(into, table) == count(b, table), table  # b holds everything a has
    assert rows(into, "select output from runs where id = ?", shared[0])[0]["output"] == "newer"  # last wins
    assert rows(into, "select id from eval_runs") == [{"id": eval_id}]
    runs_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("runs"))
    n_a, n_b = count(a, "runs"), count(b, "runs")
    assert runs_line.split() == [
        "runs",
        str(n_a + n_b),
        "read",
        str(n_b),
        "new",
        str(n_a),
        "already",
        "there",
    ]

    again = json.loads(invoke("merge", a, b, "--into", into, "--json").stdout)
    assert all(t["new"] == 0 for t in again["tables"].values()), again
    assert again["tables"]["runs"]["already_there"] == n_a + n_b and again["dangling"] == 0
    assert count(into, "runs") == n_b
    assert rows(into, "pragma integrity_check") == [{"integrity_check": "ok"}]
    assert rows(into, "pragma foreign_key_check") == []
    assert {r["name"] for r in rows(into, "select name from _migrations")} == {n for n, _ in MIGRATIONS}
    assert before == {a: digest(a), b: digest(b)}  # sources are read, never written


def test_merge_reads_a_source_with_an_older_schema(isolated_home: Path, fake_model: Any) -> None:
    old = isolated_home / "old.db"
    legacy = sqlite_utils.Database(old)
    MIGRATIONS[0][1](legacy)  # runs and steps only: no eval tables, no `cached` column
    legacy.table("runs").insert(
        {"id": "r1", "mode": "direct", "status": "ok", "created_at": "2025-01-01T00:00:00.000Z"}
    )
    legacy.table("steps").insert(
        {"id": "s1", "run_id": "r1", "kind": "llm", "name": "answer", "status": "ok"}
    )
    legacy.conn.close()
    result = invoke("merge", old, "--into", isolated_home / "all.db")
    assert result.exit_code == 0, result.output
    assert count(isolated_home / "all.db", "steps") == 1


def test_merge_errors_are_one_line(isolated_home: Path, fake_model: Any) -> None:
    a = isolated_home / "a.db"
    record(a, fake_model, ("direct", "chat"))
    assert "is the target of the merge" in one_error_line(invoke("merge", a, "--into", a))
    assert "no trace database at missing.db" in one_error_line(
        invoke("merge", "missing.db", "--into", "x.db")
    )
    sqlite3.connect(isolated_home / "other.db").execute("create table t (x)").connection.close()
    assert "not a composite trace database" in one_error_line(invoke("merge", "other.db", "--into", "x.db"))
    (isolated_home / "text.db").write_text("not sqlite", encoding="utf-8")
    assert "cannot read text.db" in one_error_line(invoke("merge", "text.db", "--into", "x.db"))


# -- prune -----------------------------------------------------------------------------------------------


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 12 * 3600 and parse_duration(" 90m ") == 5400
    assert parse_duration("2w") == 14 * 86400 and parse_duration("1.5s") == 1.5
    for bad in ("30", "d", "-1d", "30 days", "1y"):
        with pytest.raises(ValueError, match="--older-than"):
            parse_duration(bad)


def test_prune_deletes_old_runs_with_their_steps_and_eval_results(
    isolated_home: Path, fake_model: Any
) -> None:
    path = isolated_home / "traces.db"
    (recent,) = record(path, fake_model, ("moa", "chat"))
    eval_id = record_eval(path)  # two eval runs, their results and the eval run: made old below
    old_runs = [r["run_id"] for r in rows(path, "select run_id from eval_results")]
    old_steps = count(path, f"steps where run_id in ('{old_runs[0]}', '{old_runs[1]}')")
    long_ago = iso(time.time() - 40 * 86400)
    conn = sqlite3.connect(path)
    conn.execute("update runs set created_at = ? where id != ?", [long_ago, recent])
    conn.execute("update eval_runs set created_at = ?", [long_ago])
    conn.commit()
    conn.close()

    dry = invoke("prune", "--older-than", "30d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith(f"Would delete 2 runs, {old_steps} steps, 2 eval results and 1 eval runs")
    assert count(path, "runs") == 3 and count(path, "eval_results") == 2

    result = invoke("prune", "--older-than", "30d", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["runs"], report["steps"], report["eval_results"], report["eval_runs"]) == (
        2,
        old_steps,
        2,
        1,
    )
    assert [r["id"] for r in rows(path, "select id from runs")] == [recent]
    assert (
        count(path, "eval_results") == 0
        and rows(path, "select id from eval_runs where id = ?", eval_id) == []
    )
    assert rows(path, "select distinct run_id from steps") == [{"run_id": recent}]
    assert rows(path, "pragma foreign_key_check") == []

    nothing = invoke("prune", "--older-than", "30d", "--vacuum")
    assert nothing.stdout.startswith("Deleted 0 runs, 0 steps, 0 eval results and 0 eval runs")
    assert "Vacuumed:" in nothing.stdout
    assert invoke("list").stdout.startswith(recent)


def _wal_heavy_database(path: Path, runs: int = 400) -> sqlite3.Connection:
    """Half the runs old, half new, most of the data still in the write-ahead log: a reader held
    a snapshot while they were written, so no checkpoint could copy them (a TUI or Datasette open).
    Returns a connection that stays open (closing the last one would checkpoint the log away)."""
    from composite_cli.traces.store import open_database

    db = open_database(path)
    reader = sqlite3.connect(path)
    reader.execute("begin")
    reader.execute("select count(*) from runs").fetchone()
    long_ago, now = iso(time.time() - 40 * 86400), iso(time.time())
    with db.conn:
        db.conn.executemany(
            "insert into runs (id, created_at, mode, status, input) values (?, ?, 'direct', 'ok', ?)",
            [(f"run{i}", long_ago if i % 2 else now, "x" * 4000) for i in range(runs)],
        )
    reader.execute("rollback")
    db.conn.close()
    return reader


def _on_disk(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_prune_vacuum_reports_the_space_on_disk_including_the_log(isolated_home: Path) -> None:
    path = isolated_home / "traces.db"
    holder = _wal_heavy_database(path)
    assert path.with_name("traces.db-wal").stat().st_size > path.stat().st_size
    before = _on_disk(path)
    result = invoke("prune", "--older-than", "30d", "--vacuum", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["runs"] == 200 and report["wal_truncated"] is True
    # the file and its log, before and after: smaller, never "growing" because the log was left out
    assert report["bytes_before"] == before
    assert report["bytes_after"] == _on_disk(path) < before
    holder.close()


def test_prune_vacuum_says_when_another_reader_keeps_the_log(isolated_home: Path) -> None:
    path = isolated_home / "traces.db"
    reader = _wal_heavy_database(path)
    reader.execute("begin")
    reader.execute("select count(*) from runs").fetchone()  # a snapshot the checkpoint must keep
    try:
        result = invoke("prune", "--older-than", "30d", "--vacuum")
    finally:
        reader.execute("rollback")
        reader.close()
    assert result.exit_code == 0, result.output
    assert "bytes on disk (the database and its write-ahead log)" in result.stdout
    assert "Another process has the database open" in result.stdout


def _insert_runs(path: Path, runs: list[tuple[str, float, str, int | None]]) -> None:
    """Runs (id, age in seconds, status, pid) with one step each."""
    from composite_cli.traces.store import open_database

    db = open_database(path)
    with db.conn:
        for run_id, age, status, pid in runs:
            db.conn.execute(
                "insert into runs (id, created_at, mode, status, pid) values (?, ?, 'direct', ?, ?)",
                [run_id, iso(time.time() - age), status, pid],
            )
            db.conn.execute(
                "insert into steps (id, run_id, kind, status) values (?, ?, 'llm', ?)",
                [f"{run_id}-step", run_id, status],
            )
    db.conn.close()


def test_prune_keeps_running_runs_and_runs_within_the_grace_period(isolated_home: Path) -> None:
    import os

    path = isolated_home / "traces.db"
    day = 86400
    _insert_runs(
        path,
        [
            ("running-old", 40 * day, "running", os.getpid()),  # a live process still writes it
            ("in-eval-old", 40 * day, "ok", None),  # its eval is still running (resume needs it)
            ("just-answered", 60, "ok", None),  # a server answered it a minute ago
            ("done-old", 40 * day, "ok", None),
            ("orphan-old", 40 * day, "running", 2**30),  # its process is gone: error, then pruned
        ],
    )
    conn = sqlite3.connect(path)
    conn.execute(
        "insert into eval_runs (id, created_at, status, pid) values ('ev', ?, 'running', ?)",
        [iso(time.time() - 40 * day), os.getpid()],
    )
    conn.execute("insert into eval_results (id, eval_run_id, run_id) values ('r1', 'ev', 'in-eval-old')")
    conn.commit()
    conn.close()

    dry = invoke("prune", "--older-than", "0s", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines()[1] == (
        "Would keep 3 older runs: 2 still running (or part of an eval still running), "
        "1 started within the last 1h (--grace)."
    )
    result = invoke("prune", "--older-than", "0s", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["runs"], report["kept_running"], report["kept_recent"]) == (2, 2, 1)
    left = {r["id"] for r in rows(path, "select id from runs")}
    assert left == {"running-old", "in-eval-old", "just-answered"}
    assert {r["run_id"] for r in rows(path, "select run_id from steps")} == left
    assert count(path, "eval_runs") == 1 and count(path, "eval_results") == 1

    no_grace = invoke("prune", "--older-than", "0s", "--grace", "0s")
    assert no_grace.stdout.splitlines() == [
        no_grace.stdout.splitlines()[0],
        "Kept 2 older runs: 2 still running (or part of an eval still running).",
    ]
    assert {r["id"] for r in rows(path, "select id from runs")} == {"running-old", "in-eval-old"}
    bad = invoke("prune", "--older-than", "1d", "--grace", "soon")
    assert bad.exit_code == 2 and "--grace expects a number and a unit" in one_error_line(bad)


def test_prune_during_a_run_keeps_the_run_and_every_step(isolated_home: Path, fake_model: Any) -> None:
    """The issue's case: a request in flight while `prune` runs; its trace must survive whole."""
    from composite_cli.traces.maintenance import prune_runs

    path = isolated_home / "traces.db"
    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=path))
    fake_model.default.delay = 0.3

    async def go() -> tuple[str, Any]:
        task = asyncio.create_task(runner.run("moa", RunRequest(messages=USER, source="serve")))
        while not rows(path, "select id from runs") if path.exists() else True:
            await asyncio.sleep(0.02)
            runner.flush()
        report = await asyncio.to_thread(prune_runs, path, 0.0, grace_s=0.0)
        return (await task).run_id, report

    try:
        run_id, report = asyncio.run(go())
        runner.flush()
    finally:
        runner.close()
    assert (report.runs, report.kept_running) == (0, 1)
    run = rows(path, "select status, calls from runs where id = ?", run_id)
    assert run == [{"status": "ok", "calls": 4}]
    assert count(path, f"steps where run_id = '{run_id}' and kind = 'llm'") == 4


def test_prune_bad_duration_is_a_usage_error(db) -> None:
    result = invoke("prune", "--older-than", "soon")
    assert result.exit_code == 2 and "expects a number and a unit" in one_error_line(result)


# -- browse ----------------------------------------------------------------------------------------------


def test_browse_binds_to_loopback_with_the_metadata(tmp_path: Path) -> None:
    args = datasette_args(tmp_path / "traces.db", 8123, tmp_path / "m.json")
    assert args[:2] == ["serve", str(tmp_path / "traces.db")]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == "8123"
    assert args[args.index("--metadata") + 1] == str(tmp_path / "m.json")
    assert "--open" not in args and "--open" in datasette_args(
        tmp_path / "t.db", 0, tmp_path / "m.json", True
    )
    assert "--immutable" not in args and "-i" not in args  # composite writes while Datasette reads


# -- one id resolver for runs and eval runs (composite_cli/traces/reader.py) ----------------------------


def test_the_resolver_escapes_like_wildcards_and_lists_ambiguous_candidates() -> None:
    from composite_cli.traces.reader import EvalRunNotFound, resolve_id
    from composite_cli.traces.store import RunNotFound

    db = sqlite3.connect(":memory:")
    for table in ("runs", "eval_runs"):
        db.execute(f"create table {table} (id text primary key, created_at text)")
    ids = ["a_1", "ab2", "a%3", "a\\4", "b5", "b6"]
    db.executemany("insert into runs values (?, ?)", [(i, f"2025-01-0{n + 1}") for n, i in enumerate(ids)])
    db.executemany("insert into eval_runs values (?, ?)", [("e1", "2025-01-01"), ("e2", "2025-01-02")])
    # `_`, `%` and `\` are literal characters of a prefix, not LIKE wildcards
    assert [resolve_id(db, "runs", p) for p in ("a_", "ab", "a%", "a\\")] == ["a_1", "ab2", "a%3", "a\\4"]
    assert resolve_id(db, "runs", " b5 ") == "b5" and resolve_id(db, "runs", "latest") == "b6"
    with pytest.raises(
        RunNotFound,
        match=re.escape("ambiguous run id prefix 'a': several runs start with it (a\\4, a%3, ab2, a_1)"),
    ):
        resolve_id(db, "runs", "a")
    with pytest.raises(RunNotFound, match="no run with id 'c'"):
        resolve_id(db, "runs", "c")
    with pytest.raises(RunNotFound, match="give a run id"):
        resolve_id(db, "runs", "")
    assert resolve_id(db, "eval_runs", "latest") == "e2" and resolve_id(db, "eval_runs", "e1") == "e1"
    with pytest.raises(EvalRunNotFound, match=r"several eval runs start with it \(e2, e1\)"):
        resolve_id(db, "eval_runs", "e")
    db.execute("delete from eval_runs")
    with pytest.raises(EvalRunNotFound, match="no eval runs recorded yet"):
        resolve_id(db, "eval_runs", "latest")
