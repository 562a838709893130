"""Pilot tests of the browsing screens: traces (filter, open, live refresh from another
process, --trace), evals (start one, progress, report), modes (validate), dashboard, help,
command palette and mouse."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_tui_support import BROKEN, SIZE, engine_app, rendered, scripted_app, seeded_db, settle, wait_until
from textual.widgets import DataTable, Select, SelectionList, Tree

from composite_cli.tui.demo import fanout_script
from composite_cli.tui.screens.dashboard import DashboardScreen
from composite_cli.tui.screens.evals import EvalsScreen
from composite_cli.tui.screens.help import HelpScreen
from composite_cli.tui.screens.modes import ModesScreen
from composite_cli.tui.screens.new_eval import NewEvalScreen
from composite_cli.tui.screens.trace import TraceScreen
from composite_cli.tui.screens.traces import TracesScreen


async def test_traces_filter_by_mode_status_and_source(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=seeded_db(isolated_home), screen="traces")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, TracesScreen)
        assert len(screen.rows) == 9
        screen.query_one("#filter-mode", Select).value = "direct"
        await settle(pilot)
        assert {r["mode"] for r in screen.rows} == {"direct"} and len(screen.rows) == 4
        screen.query_one("#filter-source", Select).value = "serve"
        await settle(pilot)
        assert [r["id"] for r in screen.rows] == ["demo-0006"]
        await pilot.press("x")  # clear filters
        await settle(pilot)
        screen.query_one("#filter-status", Select).value = "error"
        await settle(pilot)
        assert [r["id"] for r in screen.rows] == ["demo-0005"]
        assert "1 run (filtered)" in str(screen.query_one("#traces-count").render())


async def test_opening_a_run_shows_its_timeline_tree_and_step_details(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=seeded_db(isolated_home), screen="traces")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = pilot.app.screen.query_one("#runs", DataTable)
        table.move_cursor(row=[r["id"] for r in pilot.app.screen.rows].index("demo-0003"))
        await pilot.press("enter")
        await settle(pilot)
        trace = pilot.app.screen
        assert isinstance(trace, TraceScreen) and trace.run_id == "demo-0003"
        tree = trace.query_one("#step-tree", Tree)
        labels = [str(n.label) for n in tree.root.children[0].children]
        assert labels == ["answer ✓ ok 1.30s", "think (think) ✓ ok 1ms"]  # in start order
        await pilot.press("down", "down")  # the think step: its notes
        await pilot.pause()
        detail = rendered(trace.query_one("#step-detail"))
        assert "think notes" in detail and "6 * 7 = 42" in detail
        await pilot.press("up")  # the model call: request, response, tokens, cost
        await pilot.pause()
        detail = rendered(trace.query_one("#step-detail"))
        assert "[user] What is 6 * 7?" in detail and "[assistant] 42" in detail
        assert "tokens 300+60" in detail and "cost $0.00004" in detail
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, TracesScreen)


async def test_trace_option_opens_straight_to_a_run_by_id_prefix(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=seeded_db(isolated_home), trace="demo-rlm")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, TraceScreen) and screen.run_id == "demo-rlm-0001"
        spans = screen.query_one("#trace-timeline").spans
        depths = {s.label: s.depth for s in spans}
        assert depths["llm_query 1"] == depths["root (iteration 1)"] + 1  # sub-calls sit deeper
        subs = [s for s in spans if s.label.startswith("llm_query")]
        assert max(s.start for s in subs) < min(s.end for s in subs)  # and overlap in time


async def test_an_unknown_run_is_an_inline_error(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=seeded_db(isolated_home), trace="nope")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "no run with id 'nope'" in str(pilot.app.screen.query_one("#trace-summary").render())


WRITER = textwrap.dedent(
    """
    import sys
    from composite_cli.traces.store import TraceStore
    from composite_cli.traces.recorder import TraceRecorder
    from composite_cli.tui.demo_data import RunSpec, simple_run
    store = TraceStore(sys.argv[1])
    recorder = TraceRecorder(store)
    for event in simple_run(RunSpec("other-process-run", "moa-v1", "serve", 10, 1.0)):
        recorder(event)
    store.close()
    """
)


async def test_traces_refresh_when_another_process_records_a_run(isolated_home: Path):
    db = seeded_db(isolated_home)
    app = scripted_app(isolated_home, [fanout_script(2)], db=db, screen="traces", poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert len(screen.rows) == 9
        subprocess.run([sys.executable, "-c", WRITER, str(db)], check=True, timeout=60)
        await wait_until(pilot, lambda: len(screen.rows) == 10)
        assert screen.rows[0]["id"] == "other-process-run"


async def test_traces_without_a_database_say_so_and_pick_it_up_later(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], screen="traces", poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert "no trace database at traces.db" in str(screen.query_one("#traces-message").render())
        seeded_db(isolated_home, evals=False)
        await wait_until(pilot, lambda: len(screen.rows) == 9)


async def test_an_eval_started_from_the_screen_shows_progress_and_its_report(isolated_home: Path, fake_model):
    evals = isolated_home / "evals"
    evals.mkdir()
    lines = [f'{{"id": "c{i}", "input": "What is {i} + {i}?", "expected": "{2 * i}"}}' for i in range(1, 5)]
    (evals / "sums.jsonl").write_text("\n".join(lines) + "\n")
    fake_model.script(lambda name, messages: "4" if "2 + 2" in str(messages) else "no idea")
    app = engine_app(isolated_home, screen="evals")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        dialog = pilot.app.screen
        assert isinstance(dialog, NewEvalScreen)
        modes = dialog.query_one("#eval-modes", SelectionList)
        modes.select("fan4-v1")
        await pilot.press("ctrl+s")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, EvalsScreen)
        await wait_until(pilot, lambda: screen.report is not None, timeout=30)
        report = screen.report
        assert [m["mode"] for m in report["modes"]] == ["direct", "fan4-v1"]
        assert report["modes"][0]["score"] == 0.25
        assert len(report["pairs"]) == 1
        notes = [str(w.render()) for w in screen.query(".progress-note")]
        assert notes == ["4/4 · errors 0 · score 25%", "4/4 · errors 0 · score 25%"]
        assert screen.query_one("#plot-cost").points or screen.query_one("#plot-latency").points


async def test_the_new_eval_dialog_explains_what_is_missing(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], screen="evals")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Pick an eval file" in str(pilot.app.screen.query_one("#eval-problem").render())
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, EvalsScreen)


async def test_modes_validate_puts_each_error_at_its_line(isolated_home: Path):
    (isolated_home / "my-modes").mkdir()
    (isolated_home / "my-modes" / "broken.yaml").write_text(BROKEN)
    app = scripted_app(isolated_home, [fanout_script(2)], screen="modes")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ModesScreen)
        await pilot.press("home")
        for _ in range(40):  # to the user's mode, wherever the shipped modes sort around it
            await pilot.pause()
            if screen.current == "broken":
                break
            await pilot.press("down")
        await pilot.press("v")
        await pilot.pause()
        assert screen.current == "broken"
        assert [e.line for e in screen.errors] == [10, 12]
        yaml = str(screen.query_one("#mode-yaml").render())
        lines = yaml.splitlines()
        at = next(i for i, line in enumerate(lines) if "from: propsals" in line)
        under = " ".join(line.strip() for line in lines[at + 1 : at + 3])  # the pane wraps it
        assert "▲ steps[1].from: unknown step 'propsals'" in under
        await pilot.press("down", "v")  # the next mode, a shipped one: valid
        await pilot.pause()
        assert screen.current not in ("broken", None) and screen.errors == []


async def test_dashboard_window_changes_with_w(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=seeded_db(isolated_home), screen="dashboard")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, DashboardScreen)
        # "fit" (the default) spans every recent run, whatever their age
        assert screen.data is not None and screen.data.window == "fit" and screen.data.requests == 9
        await pilot.press("w")
        await settle(pilot)
        assert screen.data.window == "1h" and screen.data.requests == 7
        await pilot.press("w")
        await settle(pilot)
        assert screen.data.window == "24h" and screen.data.requests == 8
        await pilot.press("w")
        await settle(pilot)
        assert screen.data.window == "7d" and screen.data.requests == 9


async def test_keys_palette_help_and_mouse_reach_every_screen(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=seeded_db(isolated_home))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f3")  # works even while typing in the prompt
        assert pilot.app.current_mode == "traces"
        await pilot.press("4")
        assert pilot.app.current_mode == "dashboard"
        titles = [c.title for c in pilot.app.get_system_commands(pilot.app.screen)]
        assert {"Go to Run", "Go to Evals", "Go to Modes", "Dashboard window: last 7d"} <= set(titles)
        await pilot.click("NavBar", offset=(14, 0))  # "1 Run"
        await pilot.pause()
        assert pilot.app.current_mode == "run"
        titles = [c.title for c in pilot.app.get_system_commands(pilot.app.screen)]
        assert {"Run the prompt", "Cancel the run", "New conversation"} <= set(titles)
        await pilot.press("f1")
        assert isinstance(pilot.app.screen, HelpScreen)
        await pilot.press("escape")
        assert pilot.app.current_mode == "run" and not isinstance(pilot.app.screen, HelpScreen)


@pytest.mark.parametrize("overlay", ["ctrl+p", "f1"])
async def test_a_screen_key_over_the_palette_or_help_closes_it_first(isolated_home: Path, overlay: str):
    """ctrl+p, F4, ctrl+p crashed the app (DuplicateIds '--command-palette': the first palette was
    left open on the Run screen's stack). A screen key closes the palette or Help, then switches."""
    from textual.command import CommandPalette

    overlays = {"ctrl+p": CommandPalette, "f1": HelpScreen}
    app = scripted_app(isolated_home, [fanout_script(2)], db=seeded_db(isolated_home))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in ("f4", "f5", "f3", "f2"):
            await pilot.press(overlay)
            await settle(pilot)
            assert isinstance(pilot.app.screen, overlays[overlay])
            await pilot.press(key)
            await settle(pilot)
            assert not isinstance(pilot.app.screen, overlays[overlay])
            assert (
                pilot.app.current_mode == {"f2": "run", "f3": "traces", "f4": "evals", "f5": "dashboard"}[key]
            )
        await pilot.press(overlay)  # it opens again, over the screen now shown
        await settle(pilot)
        assert isinstance(pilot.app.screen, overlays[overlay])
        await pilot.press("escape")
        await pilot.press("f4")  # the Evals screen has no palette or Help left on its stack
        await settle(pilot)
        assert pilot.app.current_mode == "evals" and not isinstance(pilot.app.screen, overlays[overlay])


def _many_runs(home: Path, n: int) -> Path:
    """A trace database of `n` one-call eval runs, each with its own input (`case i`)."""
    import dataclasses

    from composite_cli.events import RunStarted
    from composite_cli.traces.recorder import TraceRecorder
    from composite_cli.traces.store import TraceStore
    from composite_cli.tui.demo_data import RunSpec, simple_run

    db = home / "traces.db"
    store = TraceStore(db)
    recorder = TraceRecorder(store)
    for i in range(n):
        for event in simple_run(RunSpec(f"r{i:04d}", "moa-v1", "eval", 5000 - i, 0.1)):
            if isinstance(event, RunStarted):
                event = dataclasses.replace(event, input=f"case {i}: what is {i} * 7?\nmore lines")
            recorder(event)
    store.close()
    return db


async def test_traces_show_the_input_search_by_text_and_page_past_200_rows(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=_many_runs(isolated_home, 450), screen="traces")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, TracesScreen)
        count = lambda: str(screen.query_one("#traces-count").render())  # noqa: E731
        assert len(screen.rows) == 200 and count() == "rows 1-200 of 450"
        table = screen.query_one("#runs", DataTable)
        assert str(table.get_row_at(0)[2]) == "case 449: what is 449 * 7?"  # the input's first line
        await pilot.press("right_square_bracket", "right_square_bracket")
        await settle(pilot)
        assert count() == "rows 401-450 of 450" and screen.rows[-1]["id"] == "r0000"
        await pilot.press("right_square_bracket")  # no page after the last
        await settle(pilot)
        assert count() == "rows 401-450 of 450"
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert count() == "rows 201-400 of 450"
        await pilot.press("slash")
        await pilot.press(*"case 12:")
        await settle(pilot)
        assert [r["id"] for r in screen.rows] == ["r0012"] and count() == "1 run (filtered)"
        await pilot.press("enter")  # back to the table, and open the run
        await pilot.press("enter")
        await settle(pilot)
        trace = pilot.app.screen
        assert isinstance(trace, TraceScreen) and trace.run_id == "r0012"
        tree = trace.query_one("#step-tree", Tree)
        assert "case 12: what is 12 * 7?" in str(tree.root.label)
        tree.move_cursor_to_line(0)  # the root: the run's input and its final answer in full
        await pilot.pause()
        detail = rendered(trace.query_one("#step-detail"))
        assert "input\ncase 12: what is 12 * 7?\nmore lines" in detail and "answer\n42" in detail


async def test_a_corrupt_database_is_called_corrupt(isolated_home: Path):
    db = isolated_home / "traces.db"
    db.write_bytes(b"this is not an sqlite file at all" * 200)
    app = scripted_app(isolated_home, [fanout_script(2)], db=db, screen="traces")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = rendered(pilot.app.screen.query_one("#traces-message"))
        assert "traces.db is corrupt" in text and "cannot be read yet" not in text
        await pilot.press("4")
        await settle(pilot)
        text = rendered(pilot.app.screen.query_one("#dash-message"))
        assert "traces.db is corrupt" in text and "fills in once" not in text


async def test_traces_show_markup_like_values_as_text(isolated_home: Path):
    import dataclasses

    from composite_cli.events import RunStarted
    from composite_cli.traces.recorder import TraceRecorder
    from composite_cli.traces.store import TraceStore
    from composite_cli.tui.demo_data import RunSpec, simple_run

    db = isolated_home / "traces.db"
    store = TraceStore(db)
    recorder = TraceRecorder(store)
    for event in simple_run(RunSpec("[/]x", "[bold]", "[/red]", 5, 0.1, model="[/m]")):
        recorder(dataclasses.replace(event, input="[/] what") if isinstance(event, RunStarted) else event)
    store.close()
    app = scripted_app(isolated_home, [fanout_script(2)], db=db, screen="traces")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        row = [str(c) for c in pilot.app.screen.query_one("#runs", DataTable).get_row_at(0)]
        assert row[1:4] == ["[bold]", "[/] what", "[/red]"] and row[-1] == "[/]x"
        await pilot.press("4")
        await settle(pilot)
        assert str(pilot.app.screen.query_one("#dash-models", DataTable).get_row_at(0)[0]) == "[/m]"
        assert str(pilot.app.screen.query_one("#dash-modes", DataTable).get_row_at(0)[0]) == "[bold]"


async def test_fill_shows_str_cells_as_plain_text_never_markup():
    from textual.app import App

    from composite_cli.tui.widgets.tables import fill

    class One(App[None]):
        def compose(self):
            yield DataTable()

    async with One().run_test() as pilot:
        table = pilot.app.query_one(DataTable)
        fill(table, ("file", "n"), [["evals/[/]odd [bold].jsonl", "3"]])  # an eval file's name
        assert [str(c) for c in table.get_row_at(0)] == ["evals/[/]odd [bold].jsonl", "3"]
        assert table.columns["file"].width == len("evals/[/]odd [bold].jsonl")
