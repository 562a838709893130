"""kill -9 in the middle of work: the DB opens cleanly, interrupted runs are marked, resume loses nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """
profile: slow
profiles:
  slow:
    "*": {model: openai/gpt-4o-mini, mock_response: "Paris", mock_delay: 0.3}
"""


def wait_for_results(db_path: Path, at_least: int, timeout: float = 60) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if db_path.exists():
            try:
                count = sqlite3.connect(db_path).execute("select count(*) from eval_results").fetchone()[0]
            except sqlite3.OperationalError:
                count = 0
            if count >= at_least:
                return count
        time.sleep(0.1)
    raise AssertionError("the eval never produced results")


def test_kill_9_during_an_eval_then_resume(isolated_home: Path):
    (isolated_home / "composite.yaml").write_text(CONFIG, encoding="utf-8")
    cases = [
        {"id": f"c{i:02d}", "input": f"Capital of France? ({i})", "expected": "Paris", "scorer": "contains"}
        for i in range(16)
    ]
    (isolated_home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    exe = str(Path(sys.executable).with_name("composite"))
    proc = subprocess.Popen(
        [exe, "eval", "e.jsonl", "-m", "moa", "-c", "3"],
        cwd=isolated_home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db_path = isolated_home / "traces.db"
    try:
        wait_for_results(db_path, 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    db = sqlite3.connect(db_path)
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    eval_id = db.execute("select id from eval_runs").fetchone()[0]
    done_before = {
        r[0] for r in db.execute("select case_id from eval_results where eval_run_id = ?", [eval_id])
    }
    runs_before = db.execute("select count(*) from runs").fetchone()[0]
    assert 3 <= len(done_before) < 16
    db.close()
    resumed = subprocess.run(
        [exe, "eval", "--resume", eval_id, "--json"],
        cwd=isolated_home,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    db = sqlite3.connect(db_path)
    results = [r[0] for r in db.execute("select case_id from eval_results where eval_run_id = ?", [eval_id])]
    assert sorted(results) == [c["id"] for c in cases]  # no case lost, none recorded twice
    runs_after = db.execute("select count(*) from runs where source = 'eval'").fetchone()[0]
    assert runs_after - runs_before == 16 - len(done_before)  # finished cases did not run again
    statuses = dict(db.execute("select status, count(*) from runs group by status").fetchall())
    assert "running" not in statuses  # the runs the kill interrupted got a final status at start-up
    assert db.execute("select status from eval_runs where id = ?", [eval_id]).fetchone()[0] == "done"
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
