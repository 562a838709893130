"""Issue 17 item 7: the new-eval dialog offers the shipped eval sets and the files under the
working directory, a profile picker, and the resume of interrupted evals through the eval session
the CLI uses; modes that cannot load are shown invalid and cannot be picked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_eval_run import write_cases
from test_tui_support import BROKEN, SIZE, engine_app, scripted_app, settle
from textual.widgets import Select, SelectionList

from composite_cli.tui.demo import fanout_script
from composite_cli.tui.screens.new_eval import SHIPPED, EvalRequest, NewEvalScreen
from composite_cli.tui.services import shipped_evals_dir

CASES = [{"id": f"c{i}", "input": f"Capital of France? ({i})", "expected": "Paris"} for i in range(3)]


def rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "traces.db") as db:
        return db.execute(sql).fetchall()


async def open_dialog(pilot) -> NewEvalScreen:
    await settle(pilot)
    await pilot.press("n")
    await pilot.pause()
    dialog = pilot.app.screen
    assert isinstance(dialog, NewEvalScreen)
    return dialog


def options(select: Select) -> list[str]:
    return [str(prompt) for prompt, _ in select._options[1:]]  # [0] is the blank prompt


async def test_the_shipped_sets_are_offered_when_the_working_directory_has_none(isolated_home: Path):
    shipped = sorted(p.name for p in shipped_evals_dir().glob("*.jsonl"))
    assert "arithmetic.jsonl" in shipped
    app = scripted_app(isolated_home, [fanout_script(2)], screen="evals")
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        offered = options(dialog.query_one("#eval-file", Select))
        assert offered == [f"{SHIPPED}{name}" for name in shipped]
        # nothing is preselected from the shipped sets: a set that runs is picked on purpose
        assert dialog.query_one("#eval-file", Select).value is Select.NULL
        dialog.query_one("#eval-file", Select).value = str(shipped_evals_dir() / "arithmetic.jsonl")
        request = dialog.request()
        assert isinstance(request, EvalRequest) and request.file == shipped_evals_dir() / "arithmetic.jsonl"


async def test_files_anywhere_under_the_working_directory_are_offered(isolated_home: Path):
    for relative in ("top.jsonl", "data/sets/deep.jsonl", ".venv/lib/hidden.jsonl", "notes.txt"):
        (isolated_home / relative).parent.mkdir(parents=True, exist_ok=True)
        (isolated_home / relative).write_text('{"input": "2+2?", "expected": "4"}\n')
    app = scripted_app(isolated_home, [fanout_script(2)], screen="evals")
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        offered = options(dialog.query_one("#eval-file", Select))
        assert offered[:2] == ["top.jsonl", "data/sets/deep.jsonl"]
        assert not any("hidden" in o for o in offered)
        assert dialog.query_one("#eval-file", Select).value == "top.jsonl"  # the working directory's first


async def test_an_invalid_mode_is_shown_invalid_and_cannot_be_picked(isolated_home: Path):
    (isolated_home / "sums.jsonl").write_text('{"input": "2+2?", "expected": "4"}\n')
    app = engine_app(isolated_home, screen="evals", extra_modes={"broken": BROKEN})
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        modes = dialog.query_one("#eval-modes", SelectionList)
        broken = modes.get_option("broken")
        assert broken.disabled and "invalid" in str(broken.prompt)
        assert not modes.get_option("fan4-v1").disabled
        modes.select("broken")  # even when selected from code, it is not run
        modes.deselect("direct")
        assert dialog.request() == "Pick at least one mode."


async def test_the_profile_picked_is_the_profile_the_eval_runs_on(isolated_home: Path, fake_model):
    write_cases(isolated_home / "six.jsonl", CASES)
    app = engine_app(isolated_home, screen="evals")
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        profile = dialog.query_one("#eval-profile", Select)
        assert profile.value == "demo"  # the active one
        assert {"demo", "dry"} <= {str(p) for p in options(profile)}
        profile.value = "dry"
        request = dialog.request()
        assert isinstance(request, EvalRequest) and request.profile == "dry"
        session = request.open(app.services)
        assert await session.run() == "done"
    assert rows(isolated_home, "select profile, status from eval_runs") == [("dry", "done")]
    # the dry profile's model was asked, not the active profile's
    assert {r["model"] for r in fake_model.requests} == {"dry/mock"}


async def test_an_interrupted_eval_is_resumed_from_the_dialog(isolated_home: Path, fake_model):
    write_cases(isolated_home / "six.jsonl", CASES)
    fake_model.script(lambda name, m: "Paris")
    app = engine_app(isolated_home, screen="evals")
    started = app.services.eval_sessions().start("six.jsonl", ["direct"], limit=2)
    started.interrupted()  # stopped before any case ran
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        resume = dialog.query_one("#eval-resume", Select)
        assert not resume.disabled
        assert [v for _, v in resume._options[1:]] == [started.eval_run_id]
        assert "six.jsonl direct interrupted 0/2" in options(resume)[0]
        resume.value = started.eval_run_id
        await pilot.pause()
        request = dialog.request()
        assert isinstance(request, EvalRequest) and request.resume == started.eval_run_id
        session = request.open(app.services)
        assert session.eval_run_id == started.eval_run_id
        assert await session.run() == "done"
    assert rows(isolated_home, "select count(*) from eval_results") == [(2,)]  # its two cases, once each
    assert rows(isolated_home, "select status from eval_runs") == [("done",)]


async def test_with_no_interrupted_eval_the_resume_picker_says_so(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], screen="evals")
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        resume = dialog.query_one("#eval-resume", Select)
        assert resume.disabled and resume.prompt == "no interrupted eval"


async def test_resume_picked_in_the_dialog_finishes_the_eval_from_the_evals_screen(
    isolated_home: Path, fake_model
):
    """The whole path: n, pick the interrupted eval, ctrl+s; the Evals screen resumes it (its own
    cases, on the profile it started with) and shows its report."""
    from test_tui_support import wait_until

    from composite_cli.tui.screens.evals import EvalsScreen

    write_cases(isolated_home / "six.jsonl", CASES)
    fake_model.script(lambda name, m: "Paris")
    app = engine_app(isolated_home, screen="evals")
    started = app.services.eval_sessions("dry").start("six.jsonl", ["direct"], limit=2)
    started.interrupted()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot)
        dialog.query_one("#eval-resume", Select).value = started.eval_run_id
        await pilot.pause()
        assert dialog.query_one("#eval-profile", Select).value == "dry"  # the eval's own profile
        await pilot.press("ctrl+s")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, EvalsScreen)
        await wait_until(pilot, lambda: screen.report is not None and screen.report["modes"][0]["n"] == 2)
    assert rows(isolated_home, "select profile, status from eval_runs") == [("dry", "done")]
    assert {r["model"] for r in fake_model.requests} == {"dry/mock"}
