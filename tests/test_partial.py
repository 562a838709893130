"""A partial run (a cap stopped it: max_iterations, max_calls, deadline, budget) is never silent:
the CLI's stderr line and exit code, `--json`, the provider's response, the trace, the eval
report, the TUI and serve all say so. Plus `composite chat`'s plain progress when stderr is not a
terminal.

`capped` makes the `direct` mode's answer step end as a capped step does (the best answer so far,
marked partial, naming the cap); one test reaches a real cap, rlm-v1's max_iterations."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from composite_cli.cli.errors import EXIT_PARTIAL
from composite_cli.cli.main import app
from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.steps.call import CallStep
from composite_cli.engine.values import TextValue
from composite_cli.runner import Runner

CAP = "max_rounds (2)"


@pytest.fixture
def capped(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every `call` step ends as a capped step does: its text, marked partial, naming CAP."""
    original = CallStep.run

    async def run(self: CallStep, rt: Any) -> TextValue:
        value = await original(self, rt)
        return TextValue(value.text, partial=True, stopped_by=CAP, notes={"test": {"capped": True}})

    monkeypatch.setattr(CallStep, "run", run)
    return CAP


@pytest.fixture
def dry_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in dry profile: its calls reach the fake model like any other."""
    monkeypatch.setenv("COMPOSITE_PROFILE", "dry")


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def db_rows(sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect("traces.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


# -- composite chat --------------------------------------------------------------------------------


def test_a_partial_answer_prints_one_line_and_exits_3(dry_profile: None, fake_model: Any, capped: str):
    fake_model.default.content = "Probably Paris."
    result = invoke("chat", "-m", "direct", "Capital of France?")
    assert result.exit_code == EXIT_PARTIAL == 3
    assert result.stdout == "Probably Paris.\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    run_id = db_rows("select id from runs")[0]["id"]
    assert lines[0] == (
        f"Partial: direct stopped at {CAP} before it finished; the answer is its best so far (run {run_id})."
    )


def test_allow_partial_exits_0_and_still_says_so(dry_profile: None, fake_model: Any, capped: str):
    result = invoke("chat", "-m", "direct", "--allow-partial", "q")
    assert result.exit_code == 0
    assert result.stderr.startswith(f"Partial: direct stopped at {CAP}")


def test_an_ok_run_says_nothing_and_exits_0(dry_profile: None, fake_model: Any):
    result = invoke("chat", "-m", "direct", "q")
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(invoke("chat", "--json", "q").stdout)["composite"]["status"] == "ok"


def test_json_carries_the_status_and_a_finish_reason_that_is_not_stop(
    dry_profile: None, fake_model: Any, capped: str
):
    result = invoke("chat", "-m", "direct", "--json", "q")
    assert result.exit_code == EXIT_PARTIAL
    data = json.loads(result.stdout)
    assert data["choices"][0]["finish_reason"] == "length"
    block = data["composite"]
    assert block["status"] == "partial"
    assert block["stopped_by"] == CAP
    assert block["notes"] == {"test": {"capped": True}}
    assert result.stderr.startswith("Partial: ")


def test_the_trace_records_why_the_run_stopped(dry_profile: None, fake_model: Any, capped: str):
    invoke("chat", "-m", "direct", "q")
    run = db_rows("select status, finish_reason, stopped_by, notes_json from runs")[0]
    assert run["status"] == "partial" and run["finish_reason"] == "length"
    assert run["stopped_by"] == CAP
    assert json.loads(run["notes_json"]) == {"test": {"capped": True}}


def test_interactive_sessions_print_the_line_and_go_on(
    dry_profile: None, fake_model: Any, capped: str, monkeypatch: pytest.MonkeyPatch
):
    from composite_cli.cli import chat

    monkeypatch.setattr(chat, "stdin_is_terminal", lambda: True)
    result = invoke("chat", "-m", "direct", input="first\nsecond\n")
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"Partial: direct stopped at {CAP}") == 2


def test_a_real_cap_rlm_max_iterations(dry_profile: None, fake_model: Any):
    """rlm-v1 whose root never writes FINAL: max_iterations stops it."""
    fake_model.script(
        lambda name, m: (
            "Still looking.\n```repl\nprint(len(context))\n```" if name.startswith("root") else None
        )
    )
    result = invoke("chat", "-m", "rlm-v1", "--json", "--param", "max_iterations=1", "Count the words.")
    assert result.exit_code == EXIT_PARTIAL, result.output
    data = json.loads(result.stdout)
    assert (data["composite"]["status"], data["composite"]["stopped_by"]) == ("partial", "max_iterations (1)")
    assert data["choices"][0]["finish_reason"] == "length"
    assert "Partial: rlm-v1 stopped at max_iterations (1) before it finished" in result.stderr
    assert db_rows("select status from runs") == [{"status": "partial"}]


# -- Python and the provider -----------------------------------------------------------------------


async def test_run_result_and_run_finished_carry_the_cap(
    fake_model: Any, fake_profile: Profile, tmp_path: Path, capped: str
):
    from composite_cli.events import RunFinished

    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "t.db"))
    events: list[Any] = []
    result = await runner.run(
        "direct", RunRequest(messages=[{"role": "user", "content": "q"}]), subscribers=[events.append]
    )
    runner.close()
    assert (result.status, result.stopped_by, result.finish_reason) == ("partial", CAP, "length")
    finished = next(e for e in events if isinstance(e, RunFinished))
    assert (finished.status, finished.stopped_by, finished.finish_reason) == ("partial", CAP, "length")
    assert finished.notes == {"test": {"capped": True}}


@pytest.fixture
def litellm(fake_model: Any, tmp_path: Path) -> Any:
    import composite_cli
    from composite_cli.litellm_loader import get_litellm

    settings = Settings(profile=Profile("fake", {"*": {"model": "openai/fake"}}), db_path=tmp_path / "t.db")
    composite_cli.register(settings=settings)
    return get_litellm()


def test_the_providers_response_carries_the_status(litellm: Any, capped: str):
    response = litellm.completion(model="composite/direct", messages=[{"role": "user", "content": "q"}])
    assert response.choices[0].finish_reason == "length"
    info = response._hidden_params["composite"]
    assert (info["status"], info["stopped_by"]) == ("partial", CAP)
    assert response._hidden_params["additional_headers"]["llm_provider-x-composite-status"] == "partial"
    assert response.model_dump()["composite"] == info  # what a proxy puts in the body


async def test_a_streamed_response_ends_with_the_status(litellm: Any, capped: str):
    stream = await litellm.acompletion(
        model="composite/direct", messages=[{"role": "user", "content": "q"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    blocks = [c.composite for c in chunks if getattr(c, "composite", None)]
    assert [(b["status"], b["stopped_by"]) for b in blocks] == [("partial", CAP)]


def test_an_ok_response_says_ok(litellm: Any):
    response = litellm.completion(model="composite/direct", messages=[{"role": "user", "content": "q"}])
    assert response.choices[0].finish_reason == "stop"
    assert response._hidden_params["composite"]["status"] == "ok"
    assert response._hidden_params["composite"]["stopped_by"] is None
    assert response._hidden_params["additional_headers"]["llm_provider-x-composite-status"] == "ok"


# -- composite eval --------------------------------------------------------------------------------


def test_the_eval_report_counts_partial_runs_and_the_verdict_says_so(isolated_home: Path, capped: str):
    (isolated_home / "composite.yaml").write_text(
        'profile: dry\nprofiles:\n  dry:\n    "*": {model: openai/gpt-4o-mini, mock_response: "Paris"}\n',
        encoding="utf-8",
    )
    cases = [{"id": f"c{i}", "input": f"Capital of France? ({i})", "expected": "Paris"} for i in range(3)]
    Path("e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    result = invoke("eval", "e.jsonl", "--modes", "direct,moa", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    direct, moa = report["modes"]
    # direct's call step is capped; moa-v1 answers from a synthesize step, which is not
    assert (direct["partial"], direct["errors"], direct["scored"], direct["score"]) == (3, 0, 3, 1.0)
    assert direct["stopped_by"] == {CAP: 3}
    assert direct["partial_note"] == f"3 of 3 direct runs were partial (stopped by {CAP})"
    assert moa["partial"] == 0 and moa["partial_note"] is None
    assert report["pairs"][0]["verdict"].endswith("; 3 of 3 direct runs were partial")

    markdown = invoke("eval", "report", "latest", "--markdown").stdout
    header, _, direct_row, moa_row = markdown.splitlines()[2:6]
    assert header.startswith("| mode | n | errors | partial | score |")
    assert direct_row.startswith("| direct") and "| 3 | 0 | 3 | 100.0% |" in direct_row
    assert moa_row.startswith("| moa-v1") and "| 3 | 0 | 0 | 100.0% |" in moa_row
    assert (
        f"- 3 of 3 direct runs were partial (stopped by {CAP}); their best answers so far were scored."
        in markdown
    )
    text = invoke("eval", "report", "latest").stdout
    assert "3 of 3 direct runs were partial" in text


def test_partial_note_names_each_cap():
    from composite_cli.evals.stats.summary import partial_note

    assert partial_note("rlm-v1", 0, 5) is None
    assert partial_note("rlm-v1", 3, 5) == "3 of 5 rlm-v1 runs were partial"
    assert partial_note("rlm-v1", 5, 5, {"max_iterations (10)": 3, "deadline": 2}) == (
        "5 of 5 rlm-v1 runs were partial (stopped by max_iterations (10): 3, deadline: 2)"
    )


# -- chat progress when stderr is not a terminal ---------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _events() -> dict[str, Any]:
    from composite_cli.events import CallFinished, CallRecord, RunStarted, StepFinished, StepStarted

    record = CallRecord(
        id="c1",
        run_id="r",
        parent_id="s1",
        name="root_1",
        alias="root",
        model="m",
        started_at=0.0,
        request={},
    )
    return {
        "run": RunStarted(run_id="r", mode="rlm-v1", source="chat", profile="p", input="q", started_at=0.0),
        "start": StepStarted(
            run_id="r", step_id="s1", parent_id=None, kind="rlm", name="answer", started_at=0.0, depth=0
        ),
        "nested": StepStarted(
            run_id="r", step_id="s2", parent_id="s1", kind="rlm", name="child", started_at=0.0, depth=1
        ),
        "call": CallFinished(record=record),
        "end": StepFinished(run_id="r", step_id="s1", status="partial", latency_ms=95_200.0),
    }


def test_plain_progress_is_quiet_at_first_then_prints_steps_and_heartbeats(
    capsys: pytest.CaptureFixture[str],
):
    from composite_cli.cli.chat import Progress

    clock, ev = Clock(), _events()
    progress = Progress(True, plain=True, after_s=5.0, every_s=10.0, clock=clock)
    progress(ev["run"])
    progress(ev["start"])
    clock.now += 4
    progress.tick()
    assert capsys.readouterr().err == ""  # a quick answer adds nothing to a script's stderr
    progress(ev["call"])
    clock.now += 1  # 5 s into the run
    progress.tick()
    progress(ev["nested"])  # below the top level: not a line of its own
    clock.now += 9
    progress.tick()  # 9 s since the last line: not yet
    clock.now += 1
    progress(ev["call"])
    progress.tick()
    clock.now += 85
    progress(ev["end"])
    assert capsys.readouterr().err.splitlines() == [
        "composite: answer (rlm) running for 5s, 1 call so far",
        "composite: answer (rlm) running for 15s, 2 calls so far",
        "composite: answer (rlm) partial after 95.2s",
    ]
    progress.tick()  # nothing is running: no heartbeat
    assert capsys.readouterr().err == ""


def test_plain_progress_prints_each_step_start_once_shown(capsys: pytest.CaptureFixture[str]):
    from composite_cli.cli.chat import Progress

    clock, ev = Clock(), _events()
    progress = Progress(True, plain=True, after_s=0.0, every_s=10.0, clock=clock)
    for name in ("run", "start", "end"):
        progress(ev[name])
    assert capsys.readouterr().err.splitlines() == [
        "composite: answer (rlm) started",
        "composite: answer (rlm) partial after 95.2s",
    ]


def test_piped_chat_prints_plain_progress_and_quiet_hides_it(
    dry_profile: None, fake_model: Any, monkeypatch: pytest.MonkeyPatch
):
    from composite_cli.cli import chat

    monkeypatch.setattr(chat, "PLAIN_AFTER_S", 0.0)  # show lines from the start
    result = invoke("chat", "-m", "moa", "q")  # CliRunner's stderr is not a terminal
    assert result.exit_code == 0, result.output
    assert result.stdout == "fake answer\n"
    lines = result.stderr.splitlines()
    assert lines[:2] == ["composite: proposals (fanout) started", lines[1]]
    assert lines[1].startswith("composite: proposals (fanout) ok after ")
    assert "composite: answer (synthesize) started" in lines
    assert "\x1b" not in result.stderr
    quiet = invoke("chat", "-m", "moa", "-q", "q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    as_json = invoke("chat", "-m", "moa", "--json", "q")  # stdout stays pure JSON
    assert json.loads(as_json.stdout)["composite"]["status"] == "ok"
    assert "composite: proposals (fanout) started" in as_json.stderr


# -- the TUI ---------------------------------------------------------------------------------------


async def test_the_tui_shows_a_partial_run_and_why_it_stopped(
    isolated_home: Path, fake_model: Any, capped: str
):
    from test_tui_support import SIZE, engine_app, rendered, type_prompt, wait_until

    from composite_cli.tui.screens.run import RunScreen
    from composite_cli.tui.screens.trace import TraceScreen

    fake_model.add("Probably Paris.")
    app = engine_app(isolated_home, mode="direct")
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, RunScreen)
        await type_prompt(pilot, "Capital of France?")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not screen.running)
        await pilot.pause()
        assert (screen.state.status, screen.state.stopped_by) == ("partial", CAP)
        assert rendered(screen.query_one("#run-status")).startswith("partial · ")
        assert rendered(screen.query_one("#totals")).startswith(f"partial: stopped at {CAP} · calls 1")
        notes = [rendered(n) for n in screen.query(".note")]
        assert notes == [
            f"Partial answer: direct stopped at {CAP} before it finished; the answer is its best so far.\n"
        ]
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, TraceScreen) and pilot.app.screen.run)
        await pilot.pause()
        summary = rendered(pilot.app.screen.query_one("#trace-summary"))
        assert "direct · partial · tui" in summary
        assert f"partial: direct stopped at {CAP} before it finished" in summary


async def test_the_tuis_eval_screen_counts_partial_runs(isolated_home: Path, fake_model: Any, capped: str):
    from test_tui_support import SIZE, engine_app, rendered, settle, wait_until

    from composite_cli.tui.screens.evals import EvalsScreen

    evals = isolated_home / "evals"
    evals.mkdir()
    (evals / "sums.jsonl").write_text('{"id": "c1", "input": "What is 2 + 2?", "expected": "4"}\n')
    fake_model.default.content = "4"
    app = engine_app(isolated_home, screen="evals")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("ctrl+s")  # the default: direct, whose answer step is capped
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, EvalsScreen)
        await wait_until(pilot, lambda: screen.report is not None, timeout=30)
        assert screen.report["modes"][0]["partial"] == 1
        notes = [str(w.render()) for w in screen.query(".progress-note")]
        assert notes == ["1/1 · errors 0 · partial 1 · score 100%"]
        pairs = rendered(screen.query_one("#eval-pairs"))
        assert (
            f"1 of 1 direct runs were partial (stopped by {CAP}); their best answers so far were scored."
            in pairs
        )


@pytest.mark.parametrize("plain", [True, False])
def test_a_progress_line_never_joins_the_answers_last_line(plain: bool, capsys: pytest.CaptureFixture[str]):
    """Seen on a terminal: `...can still be played with one pawn.✓ answer 13.6s`. The answer's
    line is ended (on stdout) before a progress line goes to stderr, and not ended twice."""
    from composite_cli.cli.chat import Printer, Progress
    from composite_cli.events import TokenDelta

    clock, ev = Clock(), _events()
    printer = Printer(True, shares_stderr=True)  # one terminal shows both
    progress = Progress(True, plain=plain, after_s=0.0, every_s=10.0, clock=clock, printer=printer)
    progress(ev["run"])
    progress(ev["start"])
    printer(TokenDelta(run_id="r", step_id="s1", text="one pawn."))
    progress(ev["end"])
    printer.end_line()  # what chat does after the run: nothing left to end
    out = capsys.readouterr()
    assert out.out == "one pawn.\n"
    assert out.err.splitlines()[-1].endswith("95.2s" + ("" if plain else "\x1b[0m"))


def test_a_heartbeat_mid_answer_leaves_a_separate_stdout_exactly_the_answer(
    capsys: pytest.CaptureFixture[str],
):
    """Seen with `composite chat ... > answer.txt`: a heartbeat while the answer streamed put a line
    break into the file's sentence ("never lost by\n being attacked"). Where stdout does not share
    stderr's destination, nothing is added to it; the answer's line is ended once, at the end."""
    from composite_cli.cli.chat import Printer, Progress
    from composite_cli.events import TokenDelta

    clock, ev = Clock(), _events()
    printer = Printer(True, shares_stderr=False)
    progress = Progress(True, plain=True, after_s=0.0, every_s=10.0, clock=clock, printer=printer)
    progress(ev["run"])
    progress(ev["start"])
    printer(TokenDelta(run_id="r", step_id="s1", text="White has never lost by"))
    clock.now += 10
    progress.tick()  # a heartbeat while the answer is mid-sentence
    printer(TokenDelta(run_id="r", step_id="s1", text=" being attacked."))
    progress(ev["end"])
    printer.end_line()  # what chat does after the run
    out = capsys.readouterr()
    assert out.out == "White has never lost by being attacked.\n"
    assert out.err.splitlines() == [
        "composite: answer (rlm) started",
        "composite: answer (rlm) running for 10s, 0 calls so far",
        "composite: answer (rlm) partial after 95.2s",
    ]


def test_stdout_shares_stderr_when_both_reach_one_file_or_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import io

    from composite_cli.cli.errors import stdout_shares_stderr

    answer, log = tmp_path / "answer.txt", tmp_path / "log.txt"
    with answer.open("w") as out, log.open("w") as err, answer.open("a") as same:
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        assert not stdout_shares_stderr()  # `> answer.txt 2> log.txt`
        monkeypatch.setattr(sys, "stderr", same)
        assert stdout_shares_stderr()  # `> answer.txt 2>&1`
        monkeypatch.setattr(sys, "stdout", io.StringIO())
        assert not stdout_shares_stderr()  # a stream with no descriptor
