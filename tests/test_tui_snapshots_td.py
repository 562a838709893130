"""Snapshots of issue 17 items 7 and 9 (helper TD): the new-eval dialog (shipped sets, profile,
invalid modes, resume) and long text (the YAML pane and the step tree wrap to their width, in both
themes, at 80x24 and 160x48). Update with
`pytest tests/test_tui_snapshots_td.py --snapshot-update` after looking at the new SVGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_tui_support import BROKEN, scripted_app, settle
from textual.app import App

from composite_cli.tui.demo import fanout_script
from composite_cli.tui.screens.new_eval import NewEvalScreen

LONG = """name: aaa-long
description: A mode whose lines are longer than any pane.
steps:
  - id: proposals
    kind: fanout
    experts:
      - {name: analyst, model: fast, system: "You are a careful analyst who checks every number twice and writes down each assumption before using it in the answer."}
      - {name: teacher, model: fast}
      - {name: skeptic, model: fast}
      - {name: historian, model: fast}
      - {name: economist, model: fast}
      - {name: physicist, model: fast}
  - id: answer
    kind: synthesize
    from: proposals
    model: strong
    system: "Combine the proposals into one answer; keep what they agree on, and say where they disagree and why that matters: {{ candidates }}"
"""

THEMES = ["textual-dark", "textual-light"]
SIZES = [(80, 24), (160, 48)]


def _ids(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=_ids)
def test_long_yaml_and_step_tree_wrap(snap_compare, isolated_home: Path, theme: str, size: tuple[int, int]):
    (isolated_home / "my-modes").mkdir()
    (isolated_home / "my-modes" / "aaa-long.yaml").write_text(LONG)
    app = scripted_app(isolated_home, [fanout_script(4)], screen="modes")

    async def run_before(pilot):
        pilot.app.theme = theme
        await pilot.pause()
        await settle(pilot)
        await pilot.press("home")  # aaa-long sorts first
        await pilot.pause()
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


class DialogApp(App[None]):
    """The new-eval dialog alone, over a blank screen (the Evals screen behind it is not what
    these snapshots are about), reading the same services as the app."""

    def __init__(self, services: Any, theme: str):
        super().__init__()
        self.services = services
        self.start_theme = theme

    def on_mount(self) -> None:
        self.theme = self.start_theme
        names = self.services.runner.library.names()
        self.push_screen(NewEvalScreen(self.services.eval_files(), names, ["direct"], blink=False))


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=_ids)
def test_new_eval_dialog(snap_compare, isolated_home: Path, theme: str, size: tuple[int, int]):
    (isolated_home / "my-modes").mkdir()
    (isolated_home / "my-modes" / "broken.yaml").write_text(BROKEN)
    (isolated_home / "sums.jsonl").write_text('{"input": "2+2?", "expected": "4"}\n')
    app = DialogApp(scripted_app(isolated_home, [fanout_script(4)]).services, theme)

    async def run_before(pilot):
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def test_the_yaml_wraps_to_its_pane_and_again_after_a_resize(isolated_home: Path):
    """Item 9: no YAML line is cut at the pane's edge (the text wraps under its line number), the
    step tree's expert list is whole, and a resize wraps to the new width."""
    from test_tui_support import rendered

    from composite_cli.tui.widgets.yaml_view import YamlView

    (isolated_home / "my-modes").mkdir()
    (isolated_home / "my-modes" / "aaa-long.yaml").write_text(LONG)
    app = scripted_app(isolated_home, [fanout_script(4)], screen="modes")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("home")
        await settle(pilot)
        view = pilot.app.screen.query_one(YamlView)
        pane = view.parent.scrollable_content_region.width
        narrow = rendered(view, width=500).rstrip("\n").splitlines()
        assert max(len(line.rstrip()) for line in narrow) <= pane
        joined = " ".join(line[4:].strip() for line in narrow)
        assert "before using it in the answer." in joined  # all of line 7, wrapped
        assert [line[:3].strip() for line in narrow].count("7") == 1  # one number, continuations blank
        tree = rendered(pilot.app.screen.query_one("#mode-steps"), width=40).replace("│", " ")
        assert "physicist(fast); min_success=1" in " ".join(tree.split())
        await pilot.resize_terminal(160, 48)
        await settle(pilot)
        assert view.parent.scrollable_content_region.width > pane
        wide = rendered(view, width=500).rstrip("\n").splitlines()
        assert len(wide) < len(narrow)
        assert max(len(line.rstrip()) for line in wide) > pane


async def test_enter_on_an_expert_row_opens_its_full_text_live(isolated_home: Path):
    """Item 9: Enter on an expert's row during the run opens its whole text (the row shows only
    its tail), and the text keeps growing there until the expert ends."""
    from test_tui_support import type_prompt, wait_until

    from composite_cli.tui.widgets.step_table import LiveTextScreen, StepTable

    script = fanout_script(4, gate_at=0.5)
    app = scripted_app(isolated_home, [script])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await type_prompt(pilot, "openings?")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "mid" in script.reached)
        await pilot.pause(0.15)
        table = screen.query_one(StepTable)
        expert = next(i for i in screen.state.items.values() if i.is_call)
        table.focus()
        table.move_cursor(row=table.get_row_index(expert.id))
        await pilot.press("enter")
        await pilot.pause()
        opened = pilot.app.screen
        assert isinstance(opened, LiveTextScreen) and opened.item is expert
        assert expert.status == "running"
        assert str(opened.query_one("#live-text").render()) == expert.text  # at once, not at the next sync
        before = str(opened.query_one("#live-text").render())
        assert before.strip() and before in expert.text
        script.release("mid")
        await wait_until(pilot, lambda: expert.status == "ok")
        await wait_until(pilot, lambda: str(opened.query_one("#live-text").render()) == expert.text)
        assert len(expert.text) > len(before)
        assert " ok " in f" {opened.head(0).replace('·', ' ')} "
        await pilot.press("escape")
        assert pilot.app.screen is screen and table.opened is None


class TextApp(App[None]):
    """An expert's full text alone, over a blank screen (the Run screen behind it is not what
    these snapshots are about; the live test above opens it from the Run screen)."""

    def __init__(self, theme: str):
        super().__init__()
        self.start_theme = theme

    def on_mount(self) -> None:
        from composite_cli.tui.run_state import LiveItem
        from composite_cli.tui.widgets.step_table import LiveTextScreen

        self.theme = self.start_theme
        text = " ".join(["The Ruy Lopez, the Italian Game and the Queen's Gambit."] * 12)
        item = LiveItem("e0", "fan", "llm", "analyst", 1, 100.0, model="demo/fast-model", text=text)
        item.chunks = 120
        self.push_screen(LiveTextScreen(item, 102.5))


@pytest.mark.parametrize("theme", THEMES)
def test_an_experts_full_text_80x24(snap_compare, theme: str):
    async def run_before(pilot):
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(TextApp(theme), terminal_size=(80, 24), run_before=run_before)


def test_step_and_run_summaries_write_unknown_cost_as_unpriced() -> None:
    """Item 6 (TB's one cost format) in the trace detail's summaries: an ok call with no price is
    `1 unpriced`, never `$0.000000`; a run adds its unpriced calls to its known total."""
    from composite_cli.tui.widgets.step_detail import run_summary, summary_line

    step = {"kind": "llm", "name": "analyst", "status": "ok", "cost_usd": None, "model": "m"}
    assert "cost 1 unpriced" in summary_line(step)
    assert "cost ?" in summary_line({**step, "status": "error"})
    run = {"mode": "moa-v1", "status": "ok", "calls": 5, "cost_usd": 0.0076, "unpriced_calls": 3}
    assert "cost $0.0076 + 3 unpriced" in run_summary(run)


async def test_a_finished_runs_rows_show_more_text_after_a_wider_resize(isolated_home: Path):
    """Item 9: after a resize, a finished run's text column is cut again at the new width (it kept
    the narrow text: the rows were only rewritten by the run's own updates)."""
    from test_tui_support import type_prompt, wait_until

    from composite_cli.tui.widgets.step_table import StepTable

    app = scripted_app(isolated_home, [fanout_script(4)])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await type_prompt(pilot, "openings?")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not screen.running)
        await settle(pilot)
        table = screen.query_one(StepTable)
        expert = next(i for i in screen.state.items.values() if i.is_call)

        def shown() -> str:
            return str(table.get_cell(expert.id, "text"))

        narrow = shown()
        assert narrow and len(narrow) < len(expert.text)
        await pilot.resize_terminal(160, 48)
        await settle(pilot)
        await wait_until(pilot, lambda: shown() == expert.text)


@pytest.mark.parametrize("dark", [True, False])
def test_the_highlighted_yaml_has_no_background_of_its_own(dark: bool) -> None:
    """Item 8/9: the highlighter's backgrounds showed as patches behind each line in the light
    theme; the text now sits on the pane's background, its colours kept."""
    from rich.style import Style

    from composite_cli.tui.widgets.yaml_view import annotated_yaml

    text = annotated_yaml(LONG, [], dark=dark, error_style="bold red", width=60)
    styles = [Style.parse(s.style) if isinstance(s.style, str) else s.style for s in text.spans]
    assert any(style.color is not None for style in styles)
    assert all(style.bgcolor is None for style in styles)
    assert max(len(line) for line in text.plain.splitlines()) <= 60
