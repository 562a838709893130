"""`composite eval`: running, caching, resuming, interrupting, errors, the judge, the report."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.config import Profile, Settings
from composite_cli.evals.dataset import load_eval_file
from composite_cli.evals.report import build_report, compare_runs, render_comparison
from composite_cli.evals.runner import EvalRunner, EvalSettings
from composite_cli.runner import Runner

CASES = [
    {"id": "paris", "input": "Capital of France?", "expected": "Paris", "scorer": "contains"},
    {"id": "rome", "input": "Capital of Italy?", "expected": "Rome", "scorer": "contains"},
    {"id": "sum", "input": "What is 2+2?", "expected": 4, "scorer": "numeric"},
]


def write_cases(path: Path, cases=CASES) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


def make_runner(tmp_path: Path, modes_dir: Path | None = None) -> Runner:
    settings = Settings(
        profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}),
        db_path=tmp_path / "t.db",
        modes_path=(modes_dir,) if modes_dir else (),
    )
    return Runner(settings)


async def run_eval(runner: Runner, path: Path, modes: list[str], **kw) -> str:
    eval_file = load_eval_file(path)
    evals = EvalRunner(runner, EvalSettings(modes=modes, **kw))
    eval_id = evals.start(eval_file, modes)
    await evals.run(eval_file, eval_id)
    runner.flush()
    return eval_id


def rows(runner: Runner, sql: str, args=()) -> list[dict]:
    with runner.store.reader() as db:
        return list(db.query(sql, list(args)))


def answers(name, messages):
    """A model that knows capitals and sums."""
    text = messages[-1]["content"] if messages[-1]["role"] == "user" else ""
    if "France" in str(messages):
        return "Paris"
    if "Italy" in str(messages):
        return "It is Rome."
    if "2+2" in str(messages) or "2+2" in text:
        return "The answer is 4"
    return None


async def test_every_case_mode_and_repeat_is_a_scored_traced_run(fake_model, tmp_path):
    fake_model.script(answers)
    runner = make_runner(tmp_path)
    eval_id = await run_eval(runner, write_cases(tmp_path / "e.jsonl"), ["direct", "moa-v1"])
    results = rows(runner, "select * from eval_results where eval_run_id = ?", [eval_id])
    assert len(results) == 6
    assert all(r["passed"] == 1 and r["score"] == 1.0 and r["error"] is None for r in results)
    runs = rows(
        runner,
        "select r.* from runs r join eval_results e on e.run_id = r.id where e.eval_run_id = ?",
        [eval_id],
    )
    assert len(runs) == 6 and {r["source"] for r in runs} == {"eval"}
    moa = [r for r in results if r["mode"] == "moa-v1"]
    assert {r["calls"] for r in moa} == {4} and all(r["cost_usd"] > 0 for r in moa)
    report = build_report(runner.store, eval_id)
    assert [m["mode"] for m in report["modes"]] == ["direct", "moa-v1"]
    direct = report["modes"][0]
    assert direct["n"] == 3 and direct["errors"] == 0 and direct["score"] == 1.0 and direct["binary"]
    assert direct["ci_method"] == "wilson" and direct["ci"][1] == 1.0 and direct["ci"][0] < 0.5
    for key in ("latency_ms_p50", "latency_ms_p95", "tokens_mean", "cost_usd_mean", "calls_mean"):
        assert direct[key] is not None
    pair = report["pairs"][0]
    assert (pair["a"], pair["b"], pair["n"], pair["diff"], pair["wins_a"], pair["wins_b"]) == (
        "direct",
        "moa-v1",
        3,
        0.0,
        0,
        0,
    )
    assert "cannot separate" in pair["verdict"]
    assert set(report["pareto"]) == {"cost", "latency"} and "direct" in report["pareto"]["cost"]
    runner.close()


async def test_errors_are_recorded_as_errors_not_wrong_answers(fake_model, tmp_path):
    import litellm

    fake_model.script(lambda name, m: None)
    fake_model.default.error = litellm.AuthenticationError("bad key", "openai", "x")
    runner = make_runner(tmp_path)
    eval_id = await run_eval(runner, write_cases(tmp_path / "e.jsonl"), ["direct"])
    results = rows(runner, "select * from eval_results where eval_run_id = ?", [eval_id])
    assert all(r["error"].startswith("AuthenticationError") and r["score"] is None for r in results)
    summary = build_report(runner.store, eval_id)["modes"][0]
    assert summary["errors"] == 3 and summary["scored"] == 0 and summary["score"] is None
    runner.close()


async def test_rate_limits_are_retried_with_backoff(fake_model, tmp_path):
    import litellm

    fake_model.on("answer", error=litellm.RateLimitError("slow down", "openai", "x")).on("answer", "Paris")
    runner = make_runner(tmp_path)
    path = write_cases(tmp_path / "e.jsonl", CASES[:1])
    eval_id = await run_eval(runner, path, ["direct"], backoff_s=0.01)
    result = rows(runner, "select * from eval_results where eval_run_id = ?", [eval_id])[0]
    assert result["error"] is None and result["passed"] == 1
    runner.close()


async def test_cache_replays_identical_requests_and_costs_nothing(fake_model, tmp_path):
    fake_model.script(answers)
    runner = make_runner(tmp_path)
    path = write_cases(tmp_path / "e.jsonl")
    await run_eval(runner, path, ["moa-v1"])
    calls_first = len(fake_model.requests)
    second = await run_eval(runner, path, ["moa-v1"])
    assert len(fake_model.requests) == calls_first, "the re-run made no model call"
    llm = rows(
        runner,
        "select s.cached, s.cost_usd from steps s join eval_results e on e.run_id = s.run_id "
        "where e.eval_run_id = ? and s.kind = 'llm'",
        [second],
    )
    assert len(llm) == 12 and all(r["cached"] == 1 and r["cost_usd"] == 0.0 for r in llm)
    report = build_report(runner.store, second)["modes"][0]
    assert report["cost_usd_mean"] == 0.0 and report["cached_calls"] == 12
    # --no-cache calls the models again
    await run_eval(runner, path, ["moa-v1"], cache=False)
    assert len(fake_model.requests) == 2 * calls_first
    runner.close()


async def test_changing_only_the_aggregator_replays_the_proposers(fake_model, tmp_path):
    fake_model.script(answers)
    runner = make_runner(tmp_path)
    path = write_cases(tmp_path / "e.jsonl")
    await run_eval(runner, path, ["moa-v1"])
    fake_model.requests.clear()
    modes = tmp_path / "modes"
    modes.mkdir()
    shipped = (Path(__file__).resolve().parent.parent / "modes" / "moa-v1.yaml").read_text(encoding="utf-8")
    changed = shipped.replace(
        "    from: proposals\n    model: strong",
        "    from: proposals\n    model: strong\n    system: 'Merge: {{ candidates }}'",
    )
    assert changed != shipped
    (modes / "moa-v1.yaml").write_text(changed, encoding="utf-8")
    runner2 = make_runner(tmp_path, modes)
    await run_eval(runner2, path, ["moa-v1"])
    assert sorted(r["metadata"]["composite_call"] for r in fake_model.requests) == ["answer"] * 3
    runner.close()
    runner2.close()


async def test_repeats_are_not_replayed_from_each_other(fake_model, tmp_path):
    fake_model.script(answers)
    runner = make_runner(tmp_path)
    eval_id = await run_eval(runner, write_cases(tmp_path / "e.jsonl"), ["direct"], repeats=3)
    assert len(fake_model.requests) == 9
    report = build_report(runner.store, eval_id)
    assert report["eval_run"]["repeats"] == 3
    assert report["modes"][0]["pass_at_k"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert report["modes"][0]["pass_hat_k"]["3"] == 1.0
    runner.close()


async def test_resume_finishes_only_the_missing_cases(fake_model, tmp_path):
    Reply = type(fake_model.default)
    fake_model.script(lambda name, m: Reply("Paris", delay=0.05))
    many = [
        {"id": f"c{i}", "input": "Capital of France?", "expected": "Paris", "scorer": "contains"}
        for i in range(8)
    ]
    path = write_cases(tmp_path / "e.jsonl", many)
    runner = make_runner(tmp_path)
    eval_file = load_eval_file(path)
    # identical requests: without cache=False they would all be replayed after the first
    evals = EvalRunner(runner, EvalSettings(modes=["direct"], concurrency=1, cache=False))
    eval_id = evals.start(eval_file, ["direct"])

    async def interrupted():
        task = asyncio.create_task(evals.run(eval_file, eval_id))
        while len(rows(runner, "select id from eval_results where eval_run_id = ?", [eval_id])) < 3:
            runner.flush()
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    await interrupted()
    runner.flush()
    done_before = {
        r["case_id"]
        for r in rows(runner, "select case_id from eval_results where eval_run_id = ?", [eval_id])
    }
    assert 3 <= len(done_before) < 8
    assert rows(runner, "select status from eval_runs where id = ?", [eval_id])[0]["status"] == "interrupted"
    fake_model.requests.clear()
    resumed = EvalRunner(runner, EvalSettings(modes=["direct"], concurrency=4, cache=False))
    await resumed.run(eval_file, eval_id)
    runner.flush()
    results = rows(runner, "select case_id from eval_results where eval_run_id = ?", [eval_id])
    assert sorted(r["case_id"] for r in results) == sorted(c["id"] for c in many)  # none lost, none twice
    asked = [r["messages"] for r in fake_model.requests]
    assert len(asked) == 8 - len(done_before)
    runner.close()


async def test_judge_calls_are_their_own_traced_runs(fake_model, tmp_path):
    fake_model.on("answer", "Paris is the capital.").on("verdict", "SCORE: 8\nREASON: right, terse")
    case = {
        "id": "j",
        "input": "Capital of France?",
        "expected": "Paris",
        "scorer": "judge",
        "rubric": "Correct and concise.",
    }
    runner = make_runner(tmp_path)
    eval_id = await run_eval(runner, write_cases(tmp_path / "e.jsonl", [case]), ["direct"])
    result = rows(runner, "select * from eval_results where eval_run_id = ?", [eval_id])[0]
    assert result["score"] == 0.8 and result["passed"] == 0 and "right, terse" in result["explanation"]
    judge = rows(runner, "select * from runs where id = ?", [result["judge_run_id"]])[0]
    assert judge["source"] == "eval-judge" and judge["mode"] == "judge" and judge["cost_usd"] > 0
    assert result["run_id"] != result["judge_run_id"]
    summary = build_report(runner.store, eval_id)["modes"][0]
    assert summary["ci_method"] == "bootstrap" and not summary["binary"]
    runner.close()


async def test_compare_two_eval_runs_case_by_case(fake_model, tmp_path):
    runner = make_runner(tmp_path)
    path = write_cases(tmp_path / "e.jsonl")
    fake_model.script(answers)
    first = await run_eval(runner, path, ["direct"])
    fake_model.scripts.clear()
    fake_model.script(lambda name, m: "Paris" if "France" in str(m) else "no idea")
    second = await run_eval(runner, path, ["direct"], cache=False)
    result = compare_runs(runner.store, first, second)
    assert result["same_file"] is True
    mode = result["modes"][0]
    assert mode["regressed"] == ["rome", "sum"] and mode["improved"] == []
    assert mode["n"] == 3
    runner.close()


async def test_compare_names_the_partial_runs_in_its_verdict(fake_model, tmp_path):
    """rlm-v1 answers at once in the first eval; in the second its root never writes FINAL, so
    max_iterations stops every run: partial, and the comparison says so."""
    runner = make_runner(tmp_path)
    path = write_cases(tmp_path / "e.jsonl")
    fake_model.script(lambda name, m: "FINAL(Paris)" if name.startswith("root") else None)
    first = await run_eval(runner, path, ["rlm-v1"])
    fake_model.scripts.clear()
    fake_model.script(
        lambda name, m: "```repl\nprint(len(context))\n```" if name.startswith("root") else None
    )
    second = await run_eval(runner, path, ["rlm-v1"], cache=False, params={"rlm-v1": {"max_iterations": 1}})
    result = compare_runs(runner.store, first, second)
    runner.close()
    (mode,) = result["modes"]
    assert (mode["partial_a"], mode["partial_b"]) == (0, 3)
    assert mode["verdict"].endswith(f"; 3 of 3 rlm-v1 ({second}) runs were partial")
    cap = f"3 of 3 rlm-v1 ({second}) runs were partial (stopped by max_iterations (1))"
    assert mode["partial_notes"] == [f"{cap}; their best answers so far were scored"]
    text = render_comparison(result).splitlines()
    assert f"  partial: {cap}; their best answers so far were scored." in text
    assert text[1].startswith("- rlm-v1 → rlm-v1: ") and text[1].endswith("runs were partial")


# -- the command line ------------------------------------------------------------------------------

DRY = """
profile: dry
profiles:
  dry:
    "*": {model: openai/gpt-4o-mini, mock_response: "The answer is Paris, 4.", mock_delay: 0.01}
"""


def dry_cli(home: Path, cases=CASES) -> CliRunner:
    """A CliRunner for `home`, which holds the DRY config and the cases in e.jsonl."""
    (home / "composite.yaml").write_text(DRY, encoding="utf-8")
    write_cases(home / "e.jsonl", cases)
    return CliRunner()


def test_cli_eval_report_compare_and_list(isolated_home: Path):
    cli = dry_cli(isolated_home)
    result = cli.invoke(app, ["eval", "e.jsonl", "--modes", "direct,moa", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the report only; progress went to stderr
    assert [m["mode"] for m in report["modes"]] == ["direct", "moa-v1"]
    assert report["modes"][0]["score"] == pytest.approx(2 / 3)  # Paris and 4 pass, Rome does not
    progress = result.stderr.splitlines()  # not a terminal: plain lines, first 0/3, last 3/3
    assert "direct: 0/3 done, 0 running, 0 errors, 0 partial, score -, ETA unknown" in progress
    assert sorted(p.split(":")[0] for p in progress if " 3/3 done, 0 running" in p) == ["direct", "moa-v1"]
    assert "\x1b" not in result.stderr
    eval_id = report["eval_run"]["id"]
    markdown = cli.invoke(app, ["eval", "report", eval_id, "--markdown"])
    assert markdown.exit_code == 0 and "| direct" in markdown.stdout and "95% CI" in markdown.stdout
    text = cli.invoke(app, ["eval", "report", "latest"])
    assert text.exit_code == 0 and "moa-v1" in text.stdout
    again = cli.invoke(app, ["eval", "e.jsonl", "-m", "direct", "--json"])
    second = json.loads(again.stdout)["eval_run"]["id"]
    compared = cli.invoke(app, ["eval", "compare", eval_id, second])
    assert compared.exit_code == 0 and "direct → direct" in compared.stdout
    listed = cli.invoke(app, ["eval", "list"])
    assert eval_id in listed.stdout and second in listed.stdout


def test_cli_refuses_an_invalid_file_unless_told_to_skip(isolated_home: Path):
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    lines = [json.dumps(CASES[0]), "{not json", json.dumps({"id": "x", "expected": "y"})]
    (isolated_home / "bad.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cli = CliRunner()
    refused = cli.invoke(app, ["eval", "bad.jsonl"])
    assert refused.exit_code != 0
    assert "bad.jsonl:2:" in refused.output and "bad.jsonl:3:" in refused.output
    skipped = cli.invoke(app, ["eval", "bad.jsonl", "--skip-invalid", "--json"])
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.stdout)["modes"][0]["n"] == 1


def test_ctrl_c_keeps_finished_results_and_resume_completes(isolated_home: Path):
    slow = DRY.replace("mock_delay: 0.01", "mock_delay: 0.4")
    (isolated_home / "composite.yaml").write_text(slow, encoding="utf-8")
    many = [
        {"id": f"c{i}", "input": f"Capital of France? ({i})", "expected": "Paris", "scorer": "contains"}
        for i in range(40)
    ]  # distinct inputs: nothing is replayed from the cache; 40 x 0.4 s / 2: a wide window for the
    # interrupt after the first two results, even on a loaded machine (12 cases once finished first)
    write_cases(isolated_home / "e.jsonl", many)
    exe = str(Path(sys.executable).with_name("composite"))
    proc = subprocess.Popen(
        [exe, "eval", "e.jsonl", "-m", "direct", "-c", "2"],
        cwd=isolated_home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a suite started in the background (`nohup ... &`)
        # passes SIGINT on ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    db_path = isolated_home / "traces.db"
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and done < 2:
        time.sleep(0.2)
        if db_path.exists():
            try:
                done = sqlite3.connect(db_path).execute("select count(*) from eval_results").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
    os.kill(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with: composite eval --resume" in err
    db = sqlite3.connect(db_path)
    eval_id, status = db.execute("select id, status from eval_runs").fetchone()
    kept = db.execute("select count(*) from eval_results").fetchone()[0]
    assert status == "interrupted" and 2 <= kept < len(many)
    resumed = subprocess.run(
        [exe, "eval", "--resume", eval_id, "--json"],
        cwd=isolated_home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    ids = [r[0] for r in db.execute("select case_id from eval_results where eval_run_id = ?", [eval_id])]
    assert sorted(ids) == sorted(c["id"] for c in many)
    assert db.execute("select status from eval_runs where id = ?", [eval_id]).fetchone()[0] == "done"


def test_cli_mode_params_reach_the_mode_and_bad_ones_fail_early(isolated_home: Path):
    cli = dry_cli(isolated_home)
    result = cli.invoke(app, ["eval", "e.jsonl", "-m", "moa", "--param", "moa.extra_layers=1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["modes"][0]["calls_mean"] == 7.0  # 3 proposers, 3 in the middle layer, 1 aggregator
    bad = cli.invoke(app, ["eval", "e.jsonl", "-m", "moa", "--param", "moa.bogus=1"])
    assert bad.exit_code == 1 and "no parameter 'bogus'" in bad.output
    wrong_mode = cli.invoke(app, ["eval", "e.jsonl", "-m", "direct", "--param", "moa.extra_layers=1"])
    assert wrong_mode.exit_code == 1 and "does not run" in wrong_mode.output
