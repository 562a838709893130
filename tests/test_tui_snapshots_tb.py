"""Snapshots and pilot tests of issue 17 items 2, 5, 6 and 10 (helper TB): the Traces list (input
column, search, paging with the count), a trace's root node (the run's input and answer), loop
rounds labelled and nesting indented in the timeline, status colours, one cost format, and the
dashboard's "fit" window; in both themes at 80x24. Update with
`pytest tests/test_tui_snapshots_tb.py --snapshot-update` after looking at the new SVGs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from test_tui_support import scripted_app, seeded_db, settle
from textual.widgets import Tree

from composite_cli.events import RunFinished, RunStarted, StepFinished, StepStarted
from composite_cli.traces.recorder import TraceRecorder
from composite_cli.traces.store import TraceStore
from composite_cli.tui.demo import T0, fanout_script
from composite_cli.tui.demo_data import RunSpec, simple_run
from composite_cli.tui.screens.trace import TraceScreen
from composite_cli.tui.widgets.timeline import Timeline

THEMES = ["textual-dark", "textual-light"]
SMALL = (80, 24)


def _reflect_run(recorder: TraceRecorder, run_id: str = "reflect-0001", at: float = T0 - 60) -> None:
    """A reflect-v1 run of two rounds: draft, then refine (loop) > [critique, fix (if) > rewrite]
    twice, the second critique finding nothing to fix."""
    events: list[Any] = [
        RunStarted(run_id=run_id, mode="reflect-v1", source="tui", profile="openai",
                   input="Explain why the sky is blue.\nIn two sentences.", started_at=at),
    ]  # fmt: skip
    t = at

    def step(sid: str, parent: str | None, kind: str, name: str, depth: int, seconds: float) -> None:
        nonlocal t
        events.append(StepStarted(run_id=run_id, step_id=sid, parent_id=parent, kind=kind, name=name,
                                  started_at=t, depth=depth))  # fmt: skip
        t += seconds
        events.append(StepFinished(run_id=run_id, step_id=sid, status="ok", latency_ms=seconds * 1000,
                                   output=f"{name} output"))  # fmt: skip

    step("draft", None, "call", "draft", 0, 1.0)
    events.append(StepStarted(run_id=run_id, step_id="loop", parent_id=None, kind="loop", name="refine",
                              started_at=t, depth=0))  # fmt: skip
    loop_start = t
    for n in (1, 2):
        step(f"critique{n}", "loop", "reflect", "critique", 1, 0.5)
        events.append(StepStarted(run_id=run_id, step_id=f"fix{n}", parent_id="loop", kind="if", name="fix",
                                  started_at=t, depth=1))  # fmt: skip
        fix_start = t
        if n == 1:
            step("rewrite1", "fix1", "call", "rewrite", 2, 0.8)
        events.append(StepFinished(run_id=run_id, step_id=f"fix{n}", status="ok",
                                   latency_ms=(t - fix_start) * 1000 + 1))  # fmt: skip
    events.append(
        StepFinished(run_id=run_id, step_id="loop", status="ok", latency_ms=(t - loop_start) * 1000)
    )
    events.append(RunFinished(run_id=run_id, status="ok", latency_ms=(t - at) * 1000, calls=4, prompt_tokens=400,
                              completion_tokens=120, cost_usd=None,
                              output="Sunlight scatters off air molecules; blue scatters most."))  # fmt: skip
    for event in events:
        recorder(event)


def _db(home: Path, *, evals: int = 0) -> Path:
    """The seeded demo database plus a reflect run and `evals` eval runs with distinct inputs."""
    db = seeded_db(home)
    store = TraceStore(db)
    recorder = TraceRecorder(store)
    _reflect_run(recorder)
    for i in range(evals):
        for event in simple_run(RunSpec(f"eval-{i:04d}", "moa-v1", "eval", 30 + i, 0.4, cost=None)):
            if isinstance(event, RunStarted):
                event = dataclasses.replace(event, input=f"Case {i}: what is {i} + {i}?")
            recorder(event)
    store.close()
    return db


async def test_loop_rounds_are_labelled_and_nesting_indented(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(2)], db=_db(isolated_home), trace="reflect-0001")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, TraceScreen)
        timeline = screen.query_one(Timeline)
        assert timeline.labels == [
            "draft (call)",
            "refine (loop)",
            "r1 critique (reflect)",
            "r1 fix (if)",
            "rewrite (call)",
            "r2 critique (reflect)",
            "r2 fix (if)",
        ]
        lines = str(timeline.render()).splitlines()
        assert lines[5].startswith("    rewrite (call)")  # depth 2: two cells per level
        assert lines[3].startswith("  r1 critique")
        tree = screen.query_one("#step-tree", Tree)
        loop = tree.root.children[1]
        assert [str(n.label).split(" ✓")[0] for n in loop.children] == [
            "r1 critique (reflect)",
            "r1 fix (if)",
            "r2 critique (reflect)",
            "r2 fix (if)",
        ]
        # an unpriced run: its cost is not a made-up $0 (4 calls, none priced -> "?" or "n unpriced")
        assert "$0.0" not in str(screen.query_one("#trace-summary").render())


@pytest.mark.parametrize("theme", THEMES)
def test_trace_root_shows_input_answer_and_loop_rounds(snap_compare, isolated_home: Path, theme: str):
    app = scripted_app(isolated_home, [fanout_script(2)], db=_db(isolated_home), trace="reflect-0001")

    async def run_before(pilot):
        pilot.app.theme = theme
        await settle(pilot)
        pilot.app.screen.query_one("#step-tree", Tree).move_cursor_to_line(0)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_traces_list_with_inputs_and_count(snap_compare, isolated_home: Path, theme: str):
    app = scripted_app(isolated_home, [fanout_script(2)], db=_db(isolated_home, evals=12), screen="traces")

    async def run_before(pilot):
        pilot.app.theme = theme
        await settle(pilot)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", [SMALL, (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_fit_window_and_costs(snap_compare, isolated_home: Path, theme: str, size: tuple[int, int]):
    app = scripted_app(isolated_home, [fanout_script(2)], db=_db(isolated_home, evals=12), screen="dashboard")

    async def run_before(pilot):
        pilot.app.theme = theme
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
async def test_the_timeline_axis_is_readable_in_both_themes(isolated_home: Path, theme: str):
    app = scripted_app(isolated_home, [fanout_script(2)], db=_db(isolated_home), trace="reflect-0001")
    async with app.run_test(size=SMALL) as pilot:
        pilot.app.theme = theme
        await settle(pilot)
        timeline = pilot.app.screen.query_one(Timeline)
        axis = timeline._style("timeline--axis").color
        background = timeline.rich_style.bgcolor
        assert axis is not None and background is not None
        fg, bg = axis.get_truecolor(), background.get_truecolor()
        assert sum(abs(a - b) for a, b in zip(fg, bg, strict=True)) > 150, (fg, bg)  # not white on light grey


async def test_the_trace_is_drawn_again_in_a_new_theme(isolated_home: Path):
    """The step tree's status colours come from the theme: after a theme change (ctrl+p, or a
    snapshot test setting it after the trace loaded) they are the new theme's, not the old one's."""
    app = scripted_app(isolated_home, [fanout_script(2)], db=_db(isolated_home), trace="reflect-0001")

    def status_styles(pilot: Any) -> set[str]:
        tree = pilot.app.screen.query_one("#step-tree", Tree)
        nodes, todo = [], [tree.root]
        while todo:
            node = todo.pop()
            nodes.append(node)
            todo.extend(node.children)
        labels = [node.label for node in nodes]
        return {
            str(span.style)
            for label in labels
            for span in label.spans
            if "ok" in label.plain[span.start : span.end]
        }

    async with app.run_test(size=SMALL) as pilot:
        pilot.app.theme = "textual-dark"
        await settle(pilot)
        assert isinstance(pilot.app.screen, TraceScreen)
        dark = status_styles(pilot)
        pilot.app.theme = "textual-light"
        await settle(pilot)
        light = status_styles(pilot)
        success = pilot.app.theme_variables["success"]
        assert dark and light and dark != light
        assert any(success.lower() in style.lower() for style in light), (light, success)


@pytest.mark.parametrize("width", range(4, 41))
def test_the_time_axis_labels_never_run_together(width: int):
    """Seen at 80x24 on a 3.08 s run: `0s┈┈┈1.54s3.08s`. Each label kept has axis on both sides."""
    from composite_cli.tui.widgets.timeline import axis_ticks

    line = axis_ticks(3.08, width)
    assert len(line) == width
    labels = [part for part in line.split("┈") if part]
    assert "".join(labels) == "".join(line.split("┈"))
    assert set(labels) <= {"0s", "1.54s", "3.08s"}, line  # each one whole, none joined to another
    assert labels  # the total where it fits, else 0s
    if width >= len("0s┈3.08s"):
        assert labels[0] == "0s" and labels[-1] == "3.08s" and line.endswith("3.08s")
    if width >= len("0s┈┈1.54s┈┈3.08s") + 4:
        assert labels == ["0s", "1.54s", "3.08s"]
