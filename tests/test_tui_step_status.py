"""The TUI's live step table and timeline know every step status of the one vocabulary
(events.STEP_STATUSES): each has a mark, and a step that timed out or was skipped shows why."""

from __future__ import annotations

from composite_cli.events import STEP_STATUSES
from composite_cli.tui.run_state import LiveItem
from composite_cli.tui.widgets.step_table import STATUS_MARKS, StepTable


def _item(status: str, error: str | None) -> LiveItem:
    return LiveItem(
        id="s1", parent_id=None, kind="call", name="draft", depth=0, started=0.0, ended=2.0,
        status=status, text="the output", error=error,
    )  # fmt: skip


def test_every_step_status_has_a_mark() -> None:
    assert set(STEP_STATUSES) <= set(STATUS_MARKS)
    assert "refused" not in STATUS_MARKS  # a refused tool call is `skipped` now


def test_a_timed_out_or_skipped_step_shows_its_error_text() -> None:
    for status in ("error", "timeout", "skipped"):
        cells = StepTable._cells_for(_item(status, "step draft timed out after 2s"), 2.0, 60)
        assert cells[2] == status
        assert cells[-1] == "step draft timed out after 2s", status
    cells = StepTable._cells_for(_item("ok", None), 2.0, 60)
    assert cells[-1] == "the output"


THEME = {"accent": "#a", "success": "#s", "warning": "#w", "error": "#e"}


def test_one_status_map_colours_every_known_status_and_leaves_unknown_ones_neutral() -> None:
    from composite_cli.events import RUN_STATUSES
    from composite_cli.tui.units import STATUS_STYLE, status_style
    from composite_cli.tui.widgets.timeline import status_class

    assert set(STEP_STATUSES) | set(RUN_STATUSES) | {"done", "interrupted"} <= set(STATUS_STYLE)
    assert status_style("done", THEME) == "#s" and status_style("ok", THEME) == "#s"  # a finished eval
    assert status_style("interrupted", THEME) == "#w" and status_style("timeout", THEME) == "#e"
    assert status_style("something-new", THEME) == "" and status_style(None, THEME) == ""  # not red
    assert status_class("done") == "timeline--ok" and status_class("timeout") == "timeline--error"
    assert status_class("something-new") == "timeline--muted" and status_class("skipped") == "timeline--muted"


def test_status_marks_in_every_list_use_the_one_map() -> None:
    from composite_cli.tui.widgets.step_table import status_text

    assert status_text("done", THEME).spans[0].style == "#s"  # a finished eval is not an error
    assert not status_text("mystery", THEME).spans or status_text("mystery", THEME).spans[0].style in (
        "",
        None,
    )
    assert status_text("error", THEME).spans[0].style == "#e"


def test_the_run_status_line_keeps_the_known_cost_and_counts_unpriced_calls():
    """Issue 17 item 6: one unpriced call made the whole run `cost ?` (while the Traces list said
    `$0.000000` for a failed run on the same model): now the known sum plus `n unpriced`."""
    from composite_cli import events
    from composite_cli.tui import units
    from composite_cli.tui.run_state import RunState

    def call(call_id: str, cost: float | None, status: str = "ok") -> events.CallFinished:
        record = events.CallRecord(
            id=call_id, run_id="r", parent_id=None, name=call_id, alias="a", model="m",
            started_at=0.0, request={}, status=status, cost_usd=cost,
        )  # fmt: skip
        return events.CallFinished(record=record)

    state = RunState()
    state.apply(
        events.RunStarted(run_id="r", mode="moa", source="tui", profile="p", input="hi", started_at=0.0), 0.0
    )
    for event in (call("a", 0.002), call("b", None), call("c", 0.001), call("d", None, status="error")):
        state.apply(event, 1.0)
    finished = events.RunFinished(
        run_id="r", status="ok", latency_ms=5.0, calls=4, prompt_tokens=0, completion_tokens=0, cost_usd=None
    )
    state.apply(finished, 2.0)
    assert units.cost(state.cost_usd, state.unpriced) == "$0.003 + 1 unpriced"
    only_unpriced = RunState()
    only_unpriced.apply(
        events.RunStarted(run_id="s", mode="m", source="tui", profile="p", input="", started_at=0.0), 0.0
    )
    only_unpriced.apply(call("x", None), 1.0)
    assert units.cost(only_unpriced.cost_usd, only_unpriced.unpriced) == "1 unpriced"
