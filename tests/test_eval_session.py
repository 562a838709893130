"""The eval session service (evals/session.py), shared by `composite eval` and the TUI's Evals
screen: an eval's selection is saved when it starts, wherever it starts, and a resume runs exactly
that selection, after checking that the eval file is the one it started with."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

from test_eval_run import DRY, write_cases
from test_tui_support import SIZE, engine_app, settle, wait_until
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.config import Profile, Settings
from composite_cli.evals.session import EvalFileChanged, EvalSessions
from composite_cli.runner import Runner
from composite_cli.traces import eval_records
from composite_cli.tui.screens.new_eval import EvalRequest

SIX = [
    {"id": f"c{i}", "input": f"Capital of France? ({i})", "expected": "Paris", "scorer": "contains"}
    for i in range(6)
]


def db_rows(home: Path, sql: str, args: tuple = ()) -> list[tuple]:
    path = home / "traces.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def results(home: Path, eval_id: str | None = None) -> list[str]:
    if eval_id is None:
        return sorted(r[0] for r in db_rows(home, "select case_id from eval_results"))
    return sorted(
        r[0] for r in db_rows(home, "select case_id from eval_results where eval_run_id = ?", (eval_id,))
    )


def fast(fake_model) -> None:
    fake_model.scripts.clear()
    fake_model.script(lambda name, m: "Paris")


def runner_in(home: Path) -> Runner:
    settings = Settings(
        profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=home / "traces.db"
    )
    return Runner(settings)


def test_a_tui_started_limited_eval_resumes_only_its_cases_from_the_cli(isolated_home: Path, fake_model):
    """Issue 14: the TUI never saved its case selection, so `composite eval --resume` of an eval
    started there with 3 of 6 cases ran all 6."""
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    write_cases(isolated_home / "six.jsonl", SIX)
    Reply = type(fake_model.default)
    # c0 answers at once; the others hold until the eval is stopped
    fake_model.script(lambda name, m: Reply("Paris", delay=0 if "(0)" in str(m) else 120))

    async def start_and_stop_in_the_tui() -> str:
        tui = engine_app(isolated_home, screen="evals")
        async with tui.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen = pilot.app.screen
            screen.start_eval(EvalRequest(Path("six.jsonl"), ["direct"], limit=3))
            await wait_until(pilot, lambda: results(isolated_home) == ["c0"], timeout=30)
            await pilot.press("x")
            status = "select id, status from eval_runs"
            await wait_until(pilot, lambda: [r[1] for r in db_rows(isolated_home, status)] == ["interrupted"])
            return str(db_rows(isolated_home, status)[0][0])

    eval_id = asyncio.run(start_and_stop_in_the_tui())
    fast(fake_model)
    fake_model.requests.clear()
    resumed = CliRunner().invoke(app, ["eval", "--resume", eval_id, "--json", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stderr.startswith(f"eval {eval_id}: 3 cases × 1 modes × 1 repeats")
    assert json.loads(resumed.stdout)["modes"][0]["n"] == 3
    assert results(isolated_home, eval_id) == ["c0", "c1", "c2"]  # the selection, each once
    assert len(fake_model.requests) == 2  # only the two the stop left undone
    assert db_rows(isolated_home, "select status from eval_runs") == [("done",)]


async def test_start_saves_the_exact_selection_in_the_one_write_that_records_the_eval(
    isolated_home: Path, fake_model
):
    fast(fake_model)
    cases = [dict(c, metadata={"tags": ["odd" if i % 2 else "even"]}) for i, c in enumerate(SIX)]
    path = write_cases(isolated_home / "e.jsonl", cases)
    runner = runner_in(isolated_home)
    session = EvalSessions(runner).start(path, ["direct"], tags=["odd"], limit=2, repeats=2)
    assert [c.id for c in session.cases] == ["c1", "c3"]
    record = eval_records.eval_run(runner.store, session.eval_run_id)
    assert record.status == "running" and record.cases == 2 and record.modes == ["direct"]
    saved = record.settings
    assert (saved["case_ids"], saved["filter"], saved["limit"], saved["repeats"]) == (
        ["c1", "c3"],
        ["odd"],
        2,
        2,
    )
    assert saved["file_abs"] == str(path.resolve())
    seen = []
    session.subscribe(lambda progress: seen.append(dict(progress.done)))
    assert await session.run() == "done"
    assert seen[0] == {"direct": 0} and seen[-1] == {"direct": 4}  # the plan first, every case after
    runner.close()
    assert results(isolated_home, session.eval_run_id) == ["c1", "c1", "c3", "c3"]


async def test_a_service_started_eval_resumes_its_selection_even_from_another_directory(
    isolated_home: Path, fake_model, monkeypatch
):
    fast(fake_model)
    write_cases(isolated_home / "e.jsonl", SIX)
    runner = runner_in(isolated_home)
    session = EvalSessions(runner).start("e.jsonl", ["direct"], limit=2)
    elsewhere = isolated_home / "sub"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `e.jsonl` is not here: the saved absolute path is used
    resumed = EvalSessions(runner).resume("latest")
    assert resumed.eval_run_id == session.eval_run_id
    assert [c.id for c in resumed.cases] == ["c0", "c1"] and resumed.eval_file.path == Path("e.jsonl")
    runner.close()


def test_resume_after_the_eval_file_changed_is_one_line_naming_the_file_and_the_change(
    isolated_home: Path, fake_model
):
    fast(fake_model)
    cli = CliRunner()
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    path = write_cases(isolated_home / "e.jsonl", SIX)
    started = cli.invoke(app, ["eval", "e.jsonl", "-m", "direct", "--limit", "3", "--json", "-q"])
    assert started.exit_code == 0, started.output
    eval_id = json.loads(started.stdout)["eval_run"]["id"]

    write_cases(path, [SIX[0], SIX[2], SIX[4]])  # c1 is gone (from the selection), c3, c5 too
    changed = cli.invoke(app, ["eval", "--resume", eval_id])
    assert changed.exit_code == 1 and changed.stdout == ""
    line = changed.stderr.strip()
    assert "\n" not in line, line
    assert line.startswith(f"Error: e.jsonl changed since eval {eval_id} started (sha256 ")
    assert line.endswith(": 1 selected case (c1) no longer in it; start a new eval instead")

    write_cases(path, [*SIX, {"id": "c6", "input": "Capital of Spain?", "expected": "Madrid"}])
    added = cli.invoke(app, ["eval", "--resume", eval_id]).stderr.strip()
    assert "\n" not in added and added.endswith(
        ": lines were edited, added or removed; start a new eval instead"
    )

    path.unlink()
    missing = cli.invoke(app, ["eval", "--resume", eval_id])
    assert missing.exit_code == 2 and missing.stdout == ""
    assert missing.stderr.strip() == (
        f"Error: e.jsonl: the eval file of eval {eval_id} is missing; it cannot be resumed without it "
        "(put it back, or start a new eval)"
    )
    assert results(isolated_home, eval_id) == ["c0", "c1", "c2"]  # nothing ran


async def test_the_service_refuses_a_changed_file_with_its_own_error(isolated_home: Path, fake_model):
    fast(fake_model)
    path = write_cases(isolated_home / "e.jsonl", SIX)
    runner = runner_in(isolated_home)
    EvalSessions(runner).start(path, ["direct"])
    path.write_text(path.read_text() + "\n", encoding="utf-8")  # one byte more: not the same file
    try:
        EvalSessions(runner).resume("latest")
    except EvalFileChanged as exc:
        assert str(exc).endswith(": lines were edited, added or removed; start a new eval instead")
    else:
        raise AssertionError("a changed file was resumed")
    finally:
        runner.close()


def test_an_eval_recorded_without_its_selection_resumes_the_count_it_recorded(
    isolated_home: Path, fake_model
):
    """Evals the TUI started before the selection was saved: their `cases` count is the limit."""
    fast(fake_model)
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    path = write_cases(isolated_home / "e.jsonl", SIX)
    runner = runner_in(isolated_home)
    runner.store.open()
    import hashlib

    eval_records.begin_eval(
        runner.store,
        eval_run_id="old-tui-eval",
        file="e.jsonl",
        file_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
        modes=["direct"],
        profile="p",
        settings={"repeats": 1, "cache": True, "concurrency": None, "params": {}},
        cases=2,
    )
    runner.close()
    resumed = CliRunner().invoke(app, ["eval", "--resume", "old-tui-eval", "--json", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert results(isolated_home, "old-tui-eval") == ["c0", "c1"]


async def test_a_resumed_eval_belongs_to_the_process_that_resumes_it(isolated_home: Path, fake_model):
    """Else another process opening the database takes it for abandoned (its starter's pid is gone)."""
    fast(fake_model)
    path = write_cases(isolated_home / "e.jsonl", SIX[:2])
    runner = runner_in(isolated_home)
    session = EvalSessions(runner).start(path, ["direct"])
    runner.flush()
    with sqlite3.connect(isolated_home / "traces.db") as db:
        db.execute("update eval_runs set status = 'interrupted', pid = 999999999")
    EvalSessions(runner).resume(session.eval_run_id)
    runner.close()
    assert db_rows(isolated_home, "select status, pid from eval_runs") == [("running", os.getpid())]


def test_saved_settings_from_the_database_are_checked_not_trusted(isolated_home: Path, fake_model):
    """A trace database is input (it can be merged from anywhere): a bad saved field is one line."""
    fast(fake_model)
    cli = CliRunner()
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    write_cases(isolated_home / "e.jsonl", SIX[:2])
    started = cli.invoke(app, ["eval", "e.jsonl", "-m", "direct", "--json", "-q"])
    eval_id = json.loads(started.stdout)["eval_run"]["id"]
    for field, value, expected in (
        ("repeats", "abc", "a whole number ≥ 1"),
        ("limit", 0, "a whole number ≥ 1 or null"),
        ("case_ids", "c0", "a list of strings"),
        ("params", {"direct": 3}, "an object of objects (mode → parameters)"),
    ):
        with sqlite3.connect(isolated_home / "traces.db") as db:
            saved = json.loads(db.execute("select settings from eval_runs").fetchone()[0])
            db.execute("update eval_runs set settings = ?", [json.dumps({**saved, field: value})])
        resumed = cli.invoke(app, ["eval", "--resume", eval_id])
        assert resumed.exit_code == 1 and resumed.stdout == "", resumed.output
        assert resumed.stderr.strip() == (
            f"Error: eval {eval_id}: saved settings: {field}: expected {expected}, got {value!r}"
        )
        with sqlite3.connect(isolated_home / "traces.db") as db:
            db.execute("update eval_runs set settings = ?", [json.dumps(saved)])
