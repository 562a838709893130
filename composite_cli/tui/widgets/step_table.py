"""The live rows of a run: each step as it starts, and under a fan-out one row per expert with
its model, status, elapsed time, tokens so far and the tail of its streaming text. Enter on a row
opens its full text, which keeps growing while the run goes on."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from composite_cli.events import FAILED_STEP_STATUSES
from composite_cli.tui import units
from composite_cli.tui.run_state import LiveItem, RunState

STATUS_MARKS = {
    "running": "● run",
    "ok": "✓ ok",
    "error": "✗ error",
    "cancelled": "⊘ cancel",
    "partial": "◐ partial",
    "skipped": "· skip",
    "timeout": "⧗ timeout",
}
# A step that ended this way shows its error text instead of its output.
FAILED_SHOWS_ERROR = ("error", "timeout", "skipped")
COLUMNS = (("step", 22), ("model", 16), ("status", 9), ("time", 6), ("tok", 5))


def status_text(status: str, theme: dict[str, str]) -> Text:
    """A status mark coloured from the app theme (works in light and dark themes)."""
    return _styled(STATUS_MARKS.get(status, status), units.status_style(status, theme))


def _styled(text: str, style: str) -> Text:
    """Text styled by a span, not a base style (a base style shifted DataTable cells by one)."""
    out = Text()
    out.append(text, style=style or None)
    return out


class StepTable(DataTable[Text | str]):
    """Rows are added in start order and updated in place (only the cells that changed)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._cells: dict[str, tuple[str, ...]] = {}
        self._state: RunState | None = None
        self._now = 0.0
        self.opened: LiveTextScreen | None = None  # the full text open now (kept up to date)

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.add_column(label, width=width, key=label)
        self.add_column("text", width=self._text_width(), key="text")

    def _text_width(self) -> int:
        used = sum(width + 2 for _, width in COLUMNS) + 2  # each cell has one cell of padding a side
        return max(10, self.scrollable_content_region.width - used)

    def on_resize(self) -> None:
        column = self.columns.get("text")  # type: ignore[call-overload]
        if column is not None and column.width != self._text_width():
            column.width = self._text_width()
            self._cells = {key: (*cells[:-1], "") for key, cells in self._cells.items()}
            if self._state is not None:  # a finished run gets no more syncs: cut its text again now
                self.sync(self._state, self._now)
            self.refresh()

    def reset(self) -> None:
        self.clear()
        self._cells.clear()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: its step or expert's full text, live."""
        event.stop()
        key = event.row_key.value
        if self._state is None or key is None or key not in self._state.items:
            return
        self.opened = LiveTextScreen(self._state.items[key], self._now)
        self.app.push_screen(self.opened, self._text_closed)

    def _text_closed(self, _: None) -> None:
        self.opened = None

    def sync(self, state: RunState, now: float) -> None:
        """Bring the rows up to date with the run (and the full text open, if any)."""
        self._state = state
        self._now = now
        if self.opened is not None:
            self.opened.show(now)
        theme = self.app.theme_variables
        text_w = self._text_width()
        added = False
        for item in state.items.values():
            cells = self._cells_for(item, now, text_w)
            old = self._cells.get(item.id)
            if old == cells:
                continue
            rendered = self._render_cells(item, cells, theme)
            if old is None:
                self.add_row(*rendered, key=item.id)
                added = True
            else:
                for (column, _), new, before, value in zip(
                    (*COLUMNS, ("text", 0)), cells, old, rendered, strict=True
                ):
                    if new != before:
                        self.update_cell(item.id, column, value)
            self._cells[item.id] = cells
        if added and not self.has_focus:
            self.scroll_end(animate=False)  # follow the newest rows unless the user is reading

    @staticmethod
    def _cells_for(item: LiveItem, now: float, text_w: int) -> tuple[str, ...]:
        # tree guides, not spaces: leading spaces would not survive the cell's rendering
        indent = "│ " * max(0, item.depth - 1) + ("├ " if item.depth else "")
        name = item.name if item.is_call else f"▸ {item.name} {item.kind}"
        tokens = item.tokens_so_far() if item.is_call else (str(item.completion_tokens or "") or "")
        text = item.error if item.status in FAILED_SHOWS_ERROR and item.error else item.text
        return (
            indent + units.first_line(name, COLUMNS[0][1] - len(indent)),
            units.first_line(item.model or "", COLUMNS[1][1]),
            item.status,
            units.seconds(item.elapsed(now)),
            tokens,
            units.one_line(text, text_w),
        )

    @staticmethod
    def _render_cells(item: LiveItem, cells: tuple[str, ...], theme: dict[str, str]) -> list[Text | str]:
        name, model, status, elapsed, tokens, text = cells
        return [
            _styled(name, "" if item.is_call else "bold"),
            _styled(model, "dim"),
            status_text(status, theme),
            Text(elapsed, justify="right"),
            Text(tokens, justify="right"),
            _styled(text, theme.get("error", "") if status in FAILED_STEP_STATUSES else ""),
        ]


class LiveTextScreen(ModalScreen[None]):
    """One step or expert in full: what it has written so far (or its error), with its model,
    status, time and tokens; the table's `sync` calls `show` as the run goes on."""

    DEFAULT_CSS = """
    LiveTextScreen { align: center middle; }
    #live-text-box {
        width: 90%; height: 85%; border: round $accent; background: $surface; padding: 0 1;
    }
    #live-text-head { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("enter", "close", "Close")]

    def __init__(self, item: LiveItem, now: float):
        super().__init__()
        self.item = item
        self.now = now

    def compose(self) -> Any:
        with VerticalScroll(id="live-text-box"):
            yield Static("", id="live-text-head")
            yield Static("", id="live-text")

    def on_mount(self) -> None:
        box = self.query_one("#live-text-box")
        box.border_title = f"{self.item.name} · full text"
        box.border_subtitle = "esc closes"
        self.show(self.now)

    def head(self, now: float) -> str:
        item = self.item
        parts = [item.name if item.is_call else f"{item.name} {item.kind}"]
        if item.model:
            parts.append(item.model)
        parts += [item.status, units.seconds(item.elapsed(now)), f"tokens {item.tokens_so_far()}"]
        return " · ".join(parts)

    def body(self) -> Text:
        item = self.item
        if item.status in FAILED_SHOWS_ERROR and item.error:
            return Text(item.error, style=self.app.theme_variables.get("error", ""))
        return Text(item.text or "(no text yet)")

    def show(self, now: float) -> None:
        """Update to the item's text now; follows the end while the reader is at the end."""
        boxes = self.query("#live-text-box")
        if not boxes:  # not composed yet: on_mount shows it
            return
        box = boxes.first(VerticalScroll)
        at_end = box.scroll_y >= box.max_scroll_y
        self.query_one("#live-text-head", Static).update(self.head(now))
        self.query_one("#live-text", Static).update(self.body())
        if at_end:
            box.call_after_refresh(box.scroll_end, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
