"""The Traces screen: recent runs from the trace database, filtered by mode, status and source,
refreshed when any process records a run. Enter opens a run's timeline and step tree."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Label, Select, Static

from composite_cli.errors import CompositeError
from composite_cli.traces.reader import RUN_FILTERS, TraceReader
from composite_cli.traces.store import TraceStoreUnreadable
from composite_cli.tui import units
from composite_cli.tui.screens.base import STYLES, AppScreen, Command
from composite_cli.tui.widgets.navbar import NavBar
from composite_cli.tui.widgets.step_table import status_text
from composite_cli.tui.widgets.tables import fill

COLUMNS = ("created (UTC)", "mode", "source", "status", "calls", "tokens", "cost", "latency", "run id")


def created(value: str | None) -> str:
    """`2026-01-01T00:00:05.123Z` → `2026-01-01 00:00:05`."""
    return (value or "")[:19].replace("T", " ")


class TracesScreen(AppScreen):
    CSS_PATH = STYLES / "traces.tcss"
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("r", "reload", "Refresh"),
        Binding("m", "filter('mode')", "Mode", show=False),
        Binding("s", "filter('status')", "Status", show=False),
        Binding("o", "filter('source')", "Source", show=False),
        Binding("x", "clear_filters", "Clear filters"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._values: dict[str, list[str]] = {}

    def compose(self) -> Any:
        yield NavBar("traces")
        with Horizontal(id="filters"):
            for column in RUN_FILTERS:
                yield Label(column, classes="field-label")
                yield Select[str]([], prompt="any", compact=True, id=f"filter-{column}")
            yield Static("", id="traces-count")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="traces-message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        fill(table, COLUMNS, [])
        table.focus()

    def commands(self) -> list[Command]:
        return [
            ("Refresh runs", "Read the trace database again", self.action_reload),
            ("Clear run filters", "Show runs of every mode, status and source", self.action_clear_filters),
            ("Open the selected run", "Its timeline and step tree", self.action_open),
        ]

    def filters(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for column in RUN_FILTERS:
            value = self.query_one(f"#filter-{column}", Select).value
            out[column] = value if isinstance(value, str) else None
        return out

    def action_reload(self) -> None:
        self.reload()

    def action_filter(self, column: str) -> None:
        select = self.query_one(f"#filter-{column}", Select)
        select.focus()
        select.expanded = True

    def action_clear_filters(self) -> None:
        with self.prevent(Select.Changed):
            for column in RUN_FILTERS:
                self.query_one(f"#filter-{column}", Select).clear()
        self.reload()

    @on(Select.Changed)
    def filter_changed(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.load(self.filters())

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self, filters: dict[str, str | None]) -> None:
        store = self.services.store
        try:
            reader = TraceReader(store)
            rows = reader.runs(
                mode=filters.get("mode"),
                status=filters.get("status"),
                source=filters.get("source"),
                limit=200,
                brief=True,
            )
            values = reader.filter_values()
        except CompositeError as exc:
            self.app.call_from_thread(self.show_message, _missing(exc, store.path))
            return
        self.app.call_from_thread(self.show, rows, values)

    def show_message(self, text: str) -> None:
        self.query_one("#runs", DataTable).clear()
        self.rows = []
        self._note(text)
        self.query_one("#traces-count", Static).update("")

    def _note(self, text: str) -> None:
        message = self.query_one("#traces-message", Static)
        message.update(text)
        message.set_class(bool(text), "shown")

    def show(self, rows: list[dict[str, Any]], values: dict[str, list[str]]) -> None:
        if values != self._values:
            self._values = values
            with self.prevent(Select.Changed):
                for column, options in values.items():
                    select = self.query_one(f"#filter-{column}", Select)
                    current = select.value
                    select.set_options([(v, v) for v in options])
                    if isinstance(current, str) and current in options:
                        select.value = current
        table = self.query_one("#runs", DataTable)
        keep = self.selected_run()
        self.rows = rows
        theme = self.app.theme_variables
        cells = [
            [
                created(row["created_at"]),
                Text(str(row["mode"])),
                row["source"] or "",
                status_text(row["status"] or "", theme),
                Text(str(row["calls"] or 0), justify="right"),
                Text(units.tokens(row["prompt_tokens"], row["completion_tokens"]), justify="right"),
                Text(units.cost(row["cost_usd"]), justify="right"),
                Text(units.duration(row["latency_ms"]), justify="right"),
                str(row["id"]),
            ]
            for row in rows
        ]
        fill(table, COLUMNS, cells, [str(row["id"]) for row in rows])
        if keep is not None and keep in {str(r["id"]) for r in rows}:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        filtered = any(self.filters().values())
        self.query_one("#traces-count", Static).update(
            f"{len(rows)} run{'s' if len(rows) != 1 else ''}" + (" (filtered)" if filtered else "")
        )
        self._note("" if rows else ("No run matches the filters." if filtered else "No runs recorded yet."))

    def selected_run(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_open(self) -> None:
        run_id = self.selected_run()
        if run_id is not None:
            self.composite.open_trace(run_id)

    @on(DataTable.RowSelected, "#runs")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.composite.open_trace(str(event.row_key.value))


def _missing(exc: BaseException, path: object) -> str:
    if isinstance(exc, TraceStoreUnreadable):
        where = units.short_path(path)
        return (
            f"The trace database {where} cannot be read yet ({exc.reason}). "
            "Runs appear here once one is recorded."
        )
    return f"{units.without_paths(str(exc), path)}. Runs appear here once one is recorded."
