"""`composite eval` progress: on screen from the start, modes interleaved, an ETA from what started
and finished, plain rate-limited lines when stderr is not a terminal; eval ids by prefix or `latest`."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from test_eval_run import CASES, answers, dry_cli, make_runner, write_cases

import composite_cli.calls
from composite_cli.cli.evals import ProgressBars, ProgressLines, eta_text, progress_display, progress_line
from composite_cli.cli.main import app
from composite_cli.evals.dataset import load_eval_file
from composite_cli.evals.runner import Eta, EvalRunner, EvalSettings, Progress, schedule


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rendered(bars: ProgressBars) -> str:
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(bars.bars.get_renderable())
    return out.getvalue()


# -- the runner: plan first, modes interleaved ----------------------------------------------------


def test_schedule_takes_every_mode_in_turn_case_by_case(tmp_path):
    runner = make_runner(tmp_path)
    cases = load_eval_file(write_cases(tmp_path / "e.jsonl")).cases
    specs = [runner.mode("direct"), runner.mode("moa")]
    order = [(c.id, s.name, r) for c, s, r in schedule(cases, specs, 2)]
    assert order[:6] == [
        ("paris", "direct", 0),
        ("paris", "moa-v1", 0),
        ("rome", "direct", 0),
        ("rome", "moa-v1", 0),
        ("sum", "direct", 0),
        ("sum", "moa-v1", 0),
    ]
    assert order[6] == ("paris", "direct", 1) and len(order) == 12
    runner.close()


async def test_cases_start_round_robin_across_modes(fake_model, tmp_path):
    fake_model.script(answers)
    runner = make_runner(tmp_path)
    eval_file = load_eval_file(write_cases(tmp_path / "e.jsonl"))
    started: list[str] = []

    def watch(progress: Progress) -> None:
        for mode, cases in progress.running.items():
            started.extend(f"{mode}#{token}" for token in cases if f"{mode}#{token}" not in started)

    evals = EvalRunner(runner, EvalSettings(modes=["direct", "reflect-v1"], concurrency=1), on_progress=watch)
    await evals.run(eval_file, evals.start(eval_file, ["direct", "reflect-v1"]))
    assert [s.split("#")[0] for s in started] == ["direct", "reflect-v1"] * 3
    runner.close()


async def test_every_mode_starts_and_shows_0_of_n_before_any_case_finishes(fake_model, tmp_path, monkeypatch):
    """The model waits until every mode has a case running; nothing can finish before that."""
    fake_model.script(answers)
    gate = asyncio.Event()

    async def gated(**kwargs):
        await gate.wait()
        return await fake_model(**kwargs)

    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", gated)
    runner = make_runner(tmp_path)
    eval_file = load_eval_file(write_cases(tmp_path / "e.jsonl"))
    bars = ProgressBars(Console(file=io.StringIO()))
    lines_out = io.StringIO()
    lines = ProgressLines(lines_out)
    seen: list[str] = []

    def show(progress: Progress) -> None:
        bars(progress)
        lines(progress)
        if not seen:  # the plan: before any case started
            assert not progress.running and sum(progress.done.values()) == 0
            seen.append(rendered(bars))
        if not gate.is_set() and all(progress.running.get(m) for m in progress.total):
            assert sum(progress.done.values()) == 0
            seen.append(rendered(bars))
            gate.set()

    modes = ["direct", "moa-v1"]
    evals = EvalRunner(runner, EvalSettings(modes=modes, concurrency=2), on_progress=show)
    await evals.run(eval_file, evals.start(eval_file, modes))
    assert gate.is_set() and len(seen) == 2
    for screen in seen:
        assert re.search(r"direct .* 0/3 ", screen) and re.search(r"moa-v1 .* 0/3 ", screen), screen
    assert "0 errors · 0 partial · score -" in seen[0]
    start_lines = lines_out.getvalue().splitlines()[:2]
    assert start_lines == [
        "direct: 0/3 done, 0 running, 0 errors, 0 partial, score -, ETA unknown",
        "moa-v1: 0/3 done, 0 running, 0 errors, 0 partial, score -, ETA unknown",
    ]
    final = rendered(bars)
    assert re.search(r"direct .* 3/3 .*score 100% · ETA 0:00:00", final), final
    assert sorted(x for x in lines_out.getvalue().splitlines() if "3/3" in x) == [
        "direct: 3/3 done, 0 running, 0 errors, 0 partial, score 100%, ETA 0:00:00",
        "moa-v1: 3/3 done, 0 running, 0 errors, 0 partial, score 100%, ETA 0:00:00",
    ]
    runner.close()


async def test_partial_runs_and_errors_are_counted_in_progress(fake_model, tmp_path, monkeypatch):
    import litellm

    from composite_cli.runner import Runner

    fake_model.on("answer", error=litellm.AuthenticationError("bad key", "openai", "x")).on("answer", "Paris")
    real_run = Runner.run

    async def partly(self, spec, request, **kw):
        result = await real_run(self, spec, request, **kw)
        if "Italy" in str(request.messages):
            result.status = "partial"
        return result

    monkeypatch.setattr(Runner, "run", partly)
    runner = make_runner(tmp_path)
    eval_file = load_eval_file(write_cases(tmp_path / "e.jsonl"))
    evals = EvalRunner(runner, EvalSettings(modes=["direct"], concurrency=1))
    await evals.run(eval_file, evals.start(eval_file, ["direct"]))
    progress = evals.progress
    assert (progress.done["direct"], progress.errors["direct"], progress.partial["direct"]) == (3, 1, 1)
    assert progress_line(progress, "direct").startswith("direct: 3/3 done, 0 running, 1 errors, 1 partial, ")
    runner.close()


# -- the estimate -----------------------------------------------------------------------------------


def test_eta_comes_from_cases_started_and_finished_not_whole_modes():
    clock = Clock()
    progress = Progress(clock=clock)
    order = ["direct", "rlm", "direct", "rlm", "direct", "direct"]
    progress.plan({"direct": 4, "rlm": 2}, {"direct": 0, "rlm": 0}, order, slots=2)
    assert progress.eta("rlm") is None  # nothing started
    first_direct, first_rlm = progress.started("direct"), progress.started("rlm")
    clock.now += 0.5
    assert progress.eta("rlm") is None  # running for under a second: nothing to go on yet
    clock.now += 9.5
    # rlm has run 10 s without finishing: its cases take at least that long
    progress.finished("direct", first_direct, error=False, score=1.0, partial=False)
    progress.started("direct")
    # rlm: its last case is next in line; ahead of it: direct's running case (10 s) and rlm's
    # running case (0 s left of its lower bound), over 2 slots, then one rlm case (≥10 s)
    assert progress.eta("rlm") == Eta(15.0, at_least=True)
    # direct: ahead of its last case: 10 (running direct) + 0 (running rlm) + 10 (rlm) + 10 (direct)
    assert progress.eta("direct") == Eta(25.0, at_least=True)
    assert eta_text(progress.eta("direct")) == "≥0:00:25"
    clock.now += 20  # rlm's first case finishes at 30 s: a measured latency
    progress.finished("rlm", first_rlm, error=False, score=0.0, partial=True)
    progress.started("rlm")
    eta = progress.eta("rlm")
    assert eta is not None and not eta.at_least and eta.seconds == pytest.approx(30.0)
    assert progress.partial == {"rlm": 1} and progress.accuracy("rlm") == 0.0


def test_a_mode_not_started_yet_borrows_a_rough_estimate():
    clock = Clock()
    progress = Progress(clock=clock)
    progress.plan({"a": 2, "b": 1}, {"a": 0, "b": 0}, ["a", "b", "a"], slots=1)
    token = progress.started("a")
    clock.now += 4
    progress.finished("a", token, error=False, score=1.0, partial=False)
    eta = progress.eta("b")
    assert eta == Eta(4.0, rough=True)
    assert eta_text(eta) == "~0:00:04" and eta_text(None) == "-:--:--"
    assert progress.eta("a") == Eta(8.0, rough=True)  # b's borrowed 4 s, then its own 4 s


def test_once_a_mode_has_nothing_left_to_start_only_its_own_running_cases_count():
    clock = Clock()
    progress = Progress(clock=clock)
    progress.plan({"fast": 2, "slow": 1}, {"fast": 0, "slow": 0}, ["fast", "slow", "fast"], slots=3)
    first, _ = progress.started("fast"), progress.started("slow")
    clock.now += 2
    progress.finished("fast", first, error=False, score=1.0, partial=False)
    second = progress.started("fast")
    clock.now += 1  # fast takes 2 s a case; its last case has run 1 s; slow has run 3 s so far
    assert progress.eta("fast") == Eta(1.0)  # slow's unknown latency does not make it a bound
    assert progress.eta("slow") == Eta(0.0, at_least=True)  # at least its 3 s: due now or later
    progress.finished("fast", second, error=False, score=1.0, partial=False)
    assert progress.eta("fast") == Eta(0.0)


# -- plain lines ------------------------------------------------------------------------------------


def test_plain_lines_are_rate_limited_and_end_with_a_final_line():
    clock = Clock()
    progress = Progress(clock=clock)
    progress.plan({"direct": 20}, {"direct": 0}, ["direct"] * 20, slots=1)
    out = io.StringIO()
    lines = ProgressLines(out, clock=clock, every_s=10, quiet_s=60)

    def step(seconds: float, finish: int = 0) -> list[str]:
        before = len(out.getvalue().splitlines())
        for _ in range(finish):
            token = progress.started("direct")
            progress.finished("direct", token, error=False, score=1.0, partial=False)
        clock.now += seconds
        lines(progress)
        return out.getvalue().splitlines()[before:]

    assert step(0) == ["direct: 0/20 done, 0 running, 0 errors, 0 partial, score -, ETA unknown"]
    assert step(1, finish=1) == []  # 5%, 1 s after the last line
    assert [x.split(",")[0] for x in step(1, finish=1)] == ["direct: 2/20 done"]  # a tenth passed
    assert step(1, finish=1) == []  # 15%
    assert step(8) == []  # changed, but only 9 s since the last line
    assert [x.split(",")[0] for x in step(1)] == ["direct: 3/20 done"]  # 10 s since the last line
    assert step(30) == []  # nothing changed
    assert [x.split(",")[0] for x in step(30)] == ["direct: 3/20 done"]  # 60 s of silence
    assert [x.split(",")[0] for x in step(1, finish=17)] == ["direct: 20/20 done"]
    assert step(100) == []  # ended: nothing more
    assert "\x1b" not in out.getvalue()


def test_stopped_eval_prints_the_last_counts():
    progress = Progress(clock=Clock())
    progress.plan({"a": 10}, {"a": 0}, ["a"] * 10, slots=1)
    out = io.StringIO()
    with ProgressLines(out, clock=Clock()) as lines:
        lines(progress)
        progress.finished("a", progress.started("a"), error=True, score=None, partial=False)
        lines(progress)  # 10%: printed
        progress.finished("a", progress.started("a"), error=False, score=1.0, partial=False)
    said = [x.split(",")[:3] for x in out.getvalue().splitlines()]
    assert said[-1] == ["a: 2/10 done", " 0 running", " 1 errors"]
    assert len(said) == 3


def test_bars_recompute_the_eta_at_most_every_half_second():
    clock = Clock()
    progress = Progress(clock=clock)
    progress.plan({"a": 3}, {"a": 0}, ["a"] * 3, slots=1)
    bars = ProgressBars(Console(file=io.StringIO()), clock=clock, eta_every_s=0.5)
    bars(progress)
    assert "ETA -:--:--" in rendered(bars)
    token = progress.started("a")
    clock.now += 2
    progress.finished("a", token, error=False, score=1.0, partial=False)
    bars(progress)
    assert " 1/3 " in rendered(bars) and "ETA 0:00:04" in rendered(bars)  # 2 cases of 2 s
    token = progress.started("a")
    clock.now += 0.25
    progress.finished("a", token, error=False, score=1.0, partial=False)
    assert progress.eta("a") == Eta(1.125)
    bars(progress)  # 0.25 s after the last estimate: the bar moves, the ETA text waits
    assert " 2/3 " in rendered(bars) and "ETA 0:00:04" in rendered(bars)
    clock.now += 0.25
    bars(progress)
    assert "ETA 0:00:01" in rendered(bars)
    progress.finished("a", progress.started("a"), error=False, score=1.0, partial=False)
    bars(progress)  # the end shows at once
    assert " 3/3 " in rendered(bars) and "ETA 0:00:00" in rendered(bars)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_on_a_terminal_lines_otherwise():
    assert isinstance(progress_display(Tty()), ProgressBars)
    assert isinstance(progress_display(io.StringIO()), ProgressLines)


# -- the command line -------------------------------------------------------------------------------


def test_cli_markdown_keeps_progress_on_stderr_and_quiet_hides_it(isolated_home: Path):
    """(--json's stdout and its progress lines: test_eval_run.test_cli_eval_report_compare_and_list)"""
    cli = dry_cli(isolated_home)
    markdown = cli.invoke(app, ["eval", "e.jsonl", "-m", "direct", "--markdown"])
    assert markdown.exit_code == 0, markdown.output
    assert markdown.stdout.startswith("Eval `") and "done," not in markdown.stdout
    assert "direct: 3/3 done" in markdown.stderr and "\x1b" not in markdown.stderr
    quiet = cli.invoke(app, ["eval", "e.jsonl", "-m", "direct", "--json", "-q"])
    assert quiet.exit_code == 0 and "done," not in quiet.stderr
    assert quiet.stderr.startswith("eval ")  # the id line stays: --resume needs it


def test_cli_report_compare_and_resume_accept_prefixes_and_latest(isolated_home: Path):
    cli = dry_cli(isolated_home, CASES[:2])
    ids = [
        json.loads(cli.invoke(app, ["eval", "e.jsonl", "-m", "direct", "--json", "-q"]).stdout)["eval_run"][
            "id"
        ]
        for _ in range(2)
    ]
    common = next(i for i in range(1, 40) if ids[0][:i] != ids[1][:i]) - 1
    assert common > 0  # ids from one process share a prefix
    first, second = (i[: common + 1] for i in ids)

    full = cli.invoke(app, ["eval", "report", ids[0], "--json"])
    by_prefix = cli.invoke(app, ["eval", "report", first, "--json"])
    assert by_prefix.exit_code == 0, by_prefix.output
    assert json.loads(by_prefix.stdout)["eval_run"]["id"] == ids[0]
    assert by_prefix.stdout == full.stdout
    latest = json.loads(cli.invoke(app, ["eval", "report", "latest", "--json"]).stdout)
    assert latest["eval_run"]["id"] == ids[1]

    compared = cli.invoke(app, ["eval", "compare", first, "latest", "--json"])
    assert compared.exit_code == 0, compared.output
    assert (json.loads(compared.stdout)["a"], json.loads(compared.stdout)["b"]) == tuple(ids)
    assert cli.invoke(app, ["eval", "compare", first, second]).exit_code == 0

    for args in (["report", ids[0][:common]], ["compare", ids[0][:common], "latest"]):
        ambiguous = cli.invoke(app, ["eval", *args])
        assert ambiguous.exit_code == 1 and ambiguous.stdout == ""
        line = ambiguous.stderr.strip()
        assert line.startswith("Error: ambiguous eval run id prefix") and "\n" not in line
        assert ids[0] in line and ids[1] in line  # the candidates are listed
    unknown = cli.invoke(app, ["eval", "report", "zzz"])
    assert unknown.exit_code == 1 and "no eval run with id 'zzz'" in unknown.stderr

    resumed = cli.invoke(app, ["eval", "--resume", "latest", "--json", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["eval_run"]["id"] == ids[1]
