"""`composite eval --workers N`: the cases run in N processes writing to the one trace database,
with the same results, progress, stop, kill -9 and `--resume` as in one process (issue 16)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_eval_shard import CASES, cli, fixed_latencies, report, setup_home

from composite_cli.config import Profile, Settings
from composite_cli.evals.session import EvalSessions
from composite_cli.evals.workers import share_slots
from composite_cli.runner import Runner

SLOW = Profile("slow", {"*": {"model": "openai/gpt-4o-mini", "mock_response": "Paris", "mock_delay": 0.3}})


def rows(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def results(db: Path) -> list[tuple]:
    """Every result, without what differs between two runs by design (ids, times)."""
    return sorted(
        rows(
            db,
            "select case_id, mode, repeat, score, passed, explanation, prompt_tokens, completion_tokens, "
            "cost_usd, calls, cached_calls, error, input, output from eval_results",
        )
    )


def test_workers_give_the_same_results_and_report_as_one_process(isolated_home: Path):
    setup_home(isolated_home)
    for name, workers in (("one.db", "1"), ("two.db", "2")):
        cli(
            "eval", "e.jsonl", "-m", "direct,moa", "--repeats", "2", "--limit", "9", "-q",
            "--db", name, "--workers", workers,
        )  # fmt: skip
    one, two = isolated_home / "one.db", isolated_home / "two.db"
    assert len(results(two)) == 9 * 2 * 2
    assert results(one) == results(two)
    # the cases ran in two processes other than this one, each writing its own runs
    pids = {r[0] for r in rows(two, "select distinct pid from runs where source = 'eval'")}
    assert len(pids) == 2 and os.getpid() not in pids
    for db in (one, two):
        fixed_latencies(db)
    for fmt in (["--json"], []):
        assert report(two, *fmt) == report(one, *fmt)


def test_progress_counts_every_case_of_every_worker(isolated_home: Path):
    (isolated_home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    runner = Runner(Settings(profile=SLOW, db_path=isolated_home / "traces.db"))
    seen: list[tuple[int, int]] = []
    try:
        session = EvalSessions(runner).start("e.jsonl", ["direct", "moa"], limit=6, concurrency=4, workers=2)
        session.subscribe(
            lambda p: seen.append((sum(p.done.values()), sum(len(r) for r in p.running.values())))
        )
        assert asyncio.run(session.run()) == "done"
    finally:
        runner.close()
    progress = session.progress
    assert list(progress.done.values()) == [6, 6]
    assert seen[-1] == (12, 0)
    assert max(running for _, running in seen) > 1  # cases ran at the same time
    assert progress.timed == {mode: 6 for mode in progress.done}  # each timed from its start


def test_stop_keeps_what_finished_and_resume_runs_only_the_rest(isolated_home: Path):
    """`stop()` (the TUI's `x`; Ctrl-C cancels the same way): workers end their cases, commit what
    finished and exit; the eval is `interrupted`; a resume (in workers too) runs only the rest."""
    (isolated_home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    db = isolated_home / "traces.db"
    runner = Runner(Settings(profile=SLOW, db_path=db))

    async def run_then_stop() -> str:
        session = EvalSessions(runner).start("e.jsonl", ["direct"], concurrency=2, workers=2)

        def stop_after_two(progress) -> None:
            if sum(progress.done.values()) >= 2:
                session.stop()

        session.subscribe(stop_after_two)
        try:
            await session.run()
        except asyncio.CancelledError:
            return session.eval_run_id
        raise AssertionError("the eval was not stopped")

    try:
        eval_id = asyncio.run(run_then_stop())
    finally:
        runner.close()
    assert rows(db, "select status from eval_runs") == [("interrupted",)]
    finished = rows(db, "select count(*) from eval_results")[0][0]
    assert 2 <= finished < len(CASES)
    assert not rows(db, "select id from runs where status = 'running'")  # in-flight runs were ended
    cli("eval", "--resume", eval_id, "--workers", "2", "-q")
    assert rows(db, "select status from eval_runs") == [("done",)]
    assert rows(db, "select count(*), count(distinct case_id) from eval_results") == [(12, 12)]
    # no case ran twice: one finished eval run per result
    assert rows(db, "select count(*) from runs where source = 'eval' and status = 'ok'") == [(12,)]


def _slow_eval(home: Path) -> subprocess.Popen[str]:
    """`composite eval` of 40 cases at 0.5 s each, 2 at once in 2 workers, in its own process group
    (as a terminal's foreground job), its output captured."""
    (home / "composite.yaml").write_text(
        'profile: slow\nprofiles:\n  slow:\n    "*": {model: openai/gpt-4o-mini, mock_response: Paris, '
        "mock_delay: 0.5}\n",
        encoding="utf-8",
    )
    many = [{"id": f"k{i}", "input": f"Capital of France? ({i})", "expected": "Paris"} for i in range(40)]
    (home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in many), encoding="utf-8")
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("composite")),
            "eval",
            "e.jsonl",
            "-m",
            "direct",
            "-c",
            "2",
            "-w",
            "2",
        ],
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a suite started in the background passes SIGINT on ignored; a terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_results(db: Path, parent: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 300  # bounds a hang; nothing here is timed
    while time.monotonic() < deadline:
        if db.exists() and rows(db, "select count(*) from sqlite_master where name = 'eval_results'")[0][0]:
            if rows(db, "select count(*) from eval_results")[0][0] >= count:
                return
        assert parent.poll() is None, "the eval ended first"
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} results after 300 s")


def _resume_as_printed(err: str) -> None:
    """Run the command the eval printed to finish it, as printed (with 2 workers, quietly)."""
    line = next(line for line in err.splitlines() if "Resume with: " in line)
    printed = shlex.split(line.split("Resume with: ", 1)[1])
    assert printed[:3] == ["composite", "eval", "--resume"] and printed[-2:] == ["--db", "traces.db"], line
    cli(*printed[1:], "--workers", "2", "-q")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_9_of_the_parent_ends_its_workers_and_resume_finishes(isolated_home: Path):
    db = isolated_home / "traces.db"
    parent = _slow_eval(isolated_home)
    try:
        _wait_for_results(db, parent, 2)
        workers = {r[0] for r in rows(db, "select distinct pid from runs")} - {parent.pid}
        assert workers
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 300  # bounds a hang; nothing here is timed
        while any(_alive(pid) for pid in workers):
            if time.monotonic() > deadline:  # a guard against a hang, not a measurement
                pytest.fail("the workers outlived their parent (300 s)")
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()
    done_at_kill = rows(db, "select count(*) from eval_results")[0][0]
    assert done_at_kill < 40
    cli("eval", "--resume", "latest", "--workers", "2", "-q")
    assert rows(db, "select status from eval_runs") == [("done",)]
    assert rows(db, "select count(*), count(distinct case_id) from eval_results") == [(40, 40)]
    assert rows(db, "select count(*) from runs where source = 'eval' and status = 'ok'") == [(40,)]


def test_workers_score_with_custom_scorers_and_the_environment_of_their_eval(
    isolated_home: Path, monkeypatch
):
    """A custom scorer the user allowed is loaded in the workers too (they do not ask the allow-list
    again); and the workers' fork server outlives an eval (the next starts warm), yet each eval's
    workers see that eval's environment (API keys...), not the one of the eval that started it."""
    (isolated_home / "env_scorer.py").write_text(
        "import os\n\ndef from_env(output, expected, case):\n    return float(os.environ['SCORE_FROM_ENV'])\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(isolated_home))
    setup_home(isolated_home, [{k: v for k, v in c.items() if k != "scorer"} for c in CASES])
    for value in ("1.0", "0.25"):
        monkeypatch.setenv("SCORE_FROM_ENV", value)
        db = f"env{value}.db"
        cli(
            "eval", "e.jsonl", "-m", "direct", "--limit", "4", "-q", "--db", db, "--workers", "2",
            "--scorer", "env_scorer:from_env",
        )  # fmt: skip
        scored = rows(isolated_home / db, "select score, error from eval_results")
        assert scored == [(float(value), None)] * 4, scored


def test_ctrl_c_to_the_process_group_stops_cleanly_and_resume_finishes(isolated_home: Path):
    """Ctrl-C as a terminal sends it: to `composite` and its workers at once. No traceback from any
    process, exit 130, the eval `interrupted` with what finished; the resume runs the rest once."""
    db = isolated_home / "traces.db"
    parent = _slow_eval(isolated_home)
    try:
        _wait_for_results(db, parent, 2)
        workers = {r[0] for r in rows(db, "select distinct pid from runs")} - {parent.pid}
        os.killpg(parent.pid, signal.SIGINT)
        _out, err = parent.communicate(timeout=300)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert not any(_alive(pid) for pid in workers)
    assert rows(db, "select status from eval_runs") == [("interrupted",)]
    assert rows(db, "select count(*) from eval_results")[0][0] < 40
    assert not rows(db, "select id from runs where status = 'running'")
    _resume_as_printed(err)
    assert rows(db, "select count(*), count(distinct case_id) from eval_results") == [(40, 40)]
    assert rows(db, "select count(*) from runs where source = 'eval' and status = 'ok'") == [(40,)]


def test_concurrency_stays_the_total_over_the_workers(isolated_home: Path):
    """`--workers 1000` started 108 processes for 8 slots, each with a slot of its own: 62 cases at
    once. The slots are shared out exactly, and there are never more workers than slots."""
    assert share_slots(3, 2) == [2, 1]
    assert share_slots(8, 3) == [3, 3, 2]
    assert share_slots(2, 4) == [1, 1]
    assert share_slots(8, 1000) == [1] * 8
    setup_home(isolated_home)
    out = cli("eval", "e.jsonl", "-m", "direct", "-c", "2", "-w", "4", "-q")
    assert "in 2 worker processes (not 4: at most one per case run at once, and 2 run at once)" in out
    pids = {r[0] for r in rows(isolated_home / "traces.db", "select distinct pid from runs")}
    assert len(pids) == 2 and os.getpid() not in pids


def test_a_killed_worker_ends_the_eval_with_its_report_and_the_command_to_resume(isolated_home: Path):
    """A worker killed (kill -9, the OOM killer): the eval is `error`; what finished is reported,
    and the one error line ends with the command that finishes it, which works as printed."""
    db = isolated_home / "traces.db"
    parent = _slow_eval(isolated_home)
    try:
        _wait_for_results(db, parent, 2)
        worker = next(iter({r[0] for r in rows(db, "select distinct pid from runs")} - {parent.pid}))
        os.kill(worker, signal.SIGKILL)
        out, err = parent.communicate(timeout=300)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 1, err
    assert "Traceback" not in err
    assert "eval worker failed: worker" in err and "exited with code -9" in err, err
    assert "direct" in out and "score" in out  # the report of what finished
    assert rows(db, "select status from eval_runs") == [("error",)]
    _resume_as_printed(err)
    assert rows(db, "select status from eval_runs") == [("done",)]
    assert rows(db, "select count(*), count(distinct case_id) from eval_results") == [(40, 40)]


def test_a_failing_worker_is_one_line_and_the_eval_an_error(isolated_home: Path, monkeypatch):
    """A worker that cannot run (here: the custom scorer's module, loaded by the parent, is gone
    when the worker loads it) is not a case's error: the eval ends `error`, with one line naming
    the worker and why."""
    import pytest

    from composite_cli.evals.workers import EvalWorkerFailed

    module = isolated_home / "gone_scorer.py"
    module.write_text("def score(output, expected, case):\n    return 1.0\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(isolated_home))
    plain = [{k: v for k, v in c.items() if k != "scorer"} for c in CASES]
    (isolated_home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in plain), encoding="utf-8")
    db = isolated_home / "traces.db"
    runner = Runner(Settings(profile=SLOW, db_path=db))
    try:
        session = EvalSessions(runner).start(
            "e.jsonl", ["direct"], limit=4, scorer="gone_scorer:score", workers=2
        )
        module.unlink()
        with pytest.raises(EvalWorkerFailed) as failed:
            asyncio.run(session.run())
    finally:
        runner.close()
    message = str(failed.value)
    assert message.startswith("eval worker failed: worker ") and "gone_scorer" in message, message
    assert "\n" not in message
    assert rows(db, "select status from eval_runs") == [("error",)]
    assert rows(db, "select count(*) from eval_results") == [(0,)]
