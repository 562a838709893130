"""Snapshot tests of every TUI screen and the main states (pytest-textual-snapshot).

Deterministic by construction: a fixed terminal size, no animation or cursor blink, a fake clock
(times come from the clock or from fixed trace rows), scripted engine events or the fake model
with gated calls, and workers waited for before the screenshot. Update with
`pytest tests/test_tui_snapshots.py --snapshot-update` after checking the new SVGs."""

from __future__ import annotations

from pathlib import Path

from test_tui_support import (
    BROKEN,
    SIZE,
    engine_app,
    gate_calls,
    scripted_app,
    seeded_db,
    settle,
    type_prompt,
    wait_until,
)

from composite_cli.tui.demo import T0, fanout_script
from composite_cli.tui.screens.run import RunScreen

PROMPT = "Name three classical chess openings."


def _run_screen(pilot) -> RunScreen:
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    return screen


def test_run_screen_empty(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)])

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_run_fanout_mid_run_scripted(snap_compare, isolated_home: Path):
    """Sixteen experts streaming, some done, the timeline growing (scripted engine events)."""
    script = fanout_script(16, gate_at=1.3)
    app = scripted_app(isolated_home, [script])

    async def run_before(pilot):
        await pilot.pause()
        await type_prompt(pilot, PROMPT)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "mid" in script.reached)
        await pilot.pause(0.15)  # the bridge's last merged text batch
        _run_screen(pilot).refresh_live()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_run_fanout_mid_run_fake_model(snap_compare, isolated_home: Path, fake_model, monkeypatch):
    """The real engine on the fake model: two experts answered, two still running."""
    for name, text in (("analyst", "The Ruy Lopez."), ("teacher", "The Italian Game.")):
        fake_model.on(name, text)
    gates = gate_calls(monkeypatch, fake_model, ["analyst", "teacher", "skeptic", "historian", "answer"])
    app = engine_app(isolated_home, mode="fan4-v1")

    async def run_before(pilot):
        await pilot.pause()
        screen = _run_screen(pilot)
        clock = pilot.app.services.clock
        await type_prompt(pilot, PROMPT)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(screen.state.items) == 5)
        for at, name in ((T0 + 1.0, "analyst"), (T0 + 1.5, "teacher")):
            clock.set(at)
            gates[name].set()
            await wait_until(
                pilot,
                lambda n=name: any(i.name == n and i.status == "ok" for i in screen.state.items.values()),
            )
        clock.set(T0 + 2.0)
        screen.refresh_live()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def _finished_run(pilot):
    async def go():
        await pilot.pause()
        await type_prompt(pilot, PROMPT)
        await pilot.press("ctrl+r")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.1)

    return go()


def test_run_finished(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)])

    async def run_before(pilot):
        await _finished_run(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_run_finished_light_theme_80x24(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)])

    async def run_before(pilot):
        pilot.app.theme = "textual-light"
        await _finished_run(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_run_finished_partial(snap_compare, isolated_home: Path):
    """A cap stopped the run: the status, the totals and a note under the answer say which."""
    app = scripted_app(isolated_home, [fanout_script(4, stopped_by="max_rounds (2)")])

    async def run_before(pilot):
        await _finished_run(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_traces_screen(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)], db=seeded_db(isolated_home), screen="traces")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_traces_screen_without_a_database(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)], screen="traces")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_trace_opened_with_a_step_selected(snap_compare, isolated_home: Path):
    """A recursive-LM run: sub-calls nested one level deeper, in parallel on the timeline."""
    app = scripted_app(isolated_home, [fanout_script(4)], db=seeded_db(isolated_home), trace="demo-rlm-0001")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)
        await pilot.press("down", "down", "down")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_evals_comparison(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)], db=seeded_db(isolated_home), screen="evals")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_new_eval_dialog(snap_compare, isolated_home: Path):
    evals = isolated_home / "evals"
    evals.mkdir()
    (evals / "arithmetic.jsonl").write_text('{"input": "2+2?", "expected": "4"}\n')
    app = scripted_app(isolated_home, [fanout_script(4)], screen="evals")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_dashboard(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)], db=seeded_db(isolated_home), screen="dashboard")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_modes_screen(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)], screen="modes")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_modes_validation_error_at_its_line(snap_compare, isolated_home: Path):
    (isolated_home / "my-modes").mkdir()
    (isolated_home / "my-modes" / "broken.yaml").write_text(BROKEN)
    app = scripted_app(isolated_home, [fanout_script(4)], screen="modes")

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)
        await pilot.press("home")  # broken sorts first
        await pilot.press("v")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)])

    async def run_before(pilot):
        await pilot.pause()
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
