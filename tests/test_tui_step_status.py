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
