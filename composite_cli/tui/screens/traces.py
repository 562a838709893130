"""The Traces screen: runs from the trace database, newest first, a page of PAGE at a time (the
count says which rows of how many), filtered by mode, status and source and searched by text in
their input or answer, refreshed when any process records a run. Each row shows the first line of
the run's input, so the runs of an eval can be told apart. Enter opens a run's timeline and step
tree."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from composite_cli.errors import CompositeError
from composite_cli.traces.reader import RUN_FILTERS, TraceReader
from composite_cli.traces.store import TraceStoreUnreadable
from composite_cli.tui import units
from composite_cli.tui.screens.base import STYLES, AppScreen, Command
from composite_cli.tui.widgets.navbar import NavBar
from composite_cli.tui.widgets.step_table import status_text
from composite_cli.tui.widgets.tables import fill

COLUMNS = (
    "created (UTC)",
    "mode",
    "input",
    "source",
    "status",
    "calls",
    "tokens",
    "cost",
    "latency",
    "run id",
)
PAGE = 200  # rows per page
INPUT_WIDTH = 40  # characters of the input's first line shown in the list


def created(value: str | None) -> str:
    """`2026-01-01T00:00:05.123Z` → `2026-01-01 00:00:05`."""
    return (value or "")[:19].replace("T", " ")


def input_line(text: str | None, width: int = INPUT_WIDTH) -> str:
    """The first non-blank line of a run's input, at most `width` characters."""
    line = next((part for part in (text or "").splitlines() if part.strip()), "")
    return units.first_line(line, width)


def run_cost(row: dict[str, Any]) -> str:
    """A run's cost the one way (units.cost): its known total plus its unpriced calls."""
    return units.cost(row.get("cost_usd"), int(row.get("unpriced_calls") or 0))


def page_count(offset: int, shown: int, total: int, filtered: bool) -> str:
    """`rows 1-200 of 1,234`, `1 run`, `no runs`; `(filtered)` when filters or a search apply."""
    if total <= PAGE and offset == 0:
        text = f"{total:,} run{'s' if total != 1 else ''}" if total else "no runs"
    elif shown:
        text = f"rows {offset + 1:,}-{offset + shown:,} of {total:,}"
    else:
        text = f"no rows past {offset:,} of {total:,}"
    return text + (" (filtered)" if filtered else "")


class TracesScreen(AppScreen):
    CSS_PATH = STYLES / "traces.tcss"
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("r", "reload", "Refresh"),
        Binding("m", "filter('mode')", "Mode", show=False),
        Binding("s", "filter('status')", "Status", show=False),
        Binding("o", "filter('source')", "Source", show=False),
        Binding("x", "clear_filters", "Clear filters"),
        Binding("slash", "search", "Search"),
        Binding("right_square_bracket", "page(1)", "Next page"),
        Binding("left_square_bracket", "page(-1)", "Prev page"),
    ]
    DEFAULT_CSS = """
    TracesScreen #search-row { height: 1; margin: 0 0 1 0; }
    TracesScreen #search { width: 1fr; max-width: 60; height: 1; border: none; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.page_start = 0  # the first row shown (paging)
        self.total = 0  # how many runs match the filters
        self._values: dict[str, list[str]] = {}

    def compose(self) -> Any:
        yield NavBar("traces")
        with Horizontal(id="filters"):
            for column in RUN_FILTERS:
                yield Label(column, classes="field-label")
                yield Select[str]([], prompt="any", compact=True, id=f"filter-{column}")
        with Horizontal(id="search-row"):
            yield Input(placeholder="/ search the inputs and answers", id="search")
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
            ("Search runs", "Runs whose input or answer contains a text", self.action_search),
            ("Next page of runs", f"The next {PAGE} runs", lambda: self.action_page(1)),
            ("Previous page of runs", f"The previous {PAGE} runs", lambda: self.action_page(-1)),
        ]

    def filters(self) -> dict[str, str | None]:
        """The filter pickers' values and the search text (None: any)."""
        out: dict[str, str | None] = {}
        for column in RUN_FILTERS:
            value = self.query_one(f"#filter-{column}", Select).value
            out[column] = value if isinstance(value, str) else None
        out["search"] = self.query_one("#search", Input).value.strip() or None
        return out

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_page(self, step: int) -> None:
        offset = max(0, self.page_start + step * PAGE)
        if offset >= self.total and step > 0:
            self.notify("This is the last page.", timeout=2)
            return
        if offset != self.page_start:
            self.page_start = offset
            self.reload()

    @on(Input.Changed, "#search")
    def search_changed(self) -> None:
        self.page_start = 0
        self.reload()

    @on(Input.Submitted, "#search")
    def search_submitted(self) -> None:
        self.query_one("#runs", DataTable).focus()

    def action_reload(self) -> None:
        self.reload()

    def action_filter(self, column: str) -> None:
        select = self.query_one(f"#filter-{column}", Select)
        select.focus()
        select.expanded = True

    def action_clear_filters(self) -> None:
        with self.prevent(Select.Changed, Input.Changed):
            for column in RUN_FILTERS:
                self.query_one(f"#filter-{column}", Select).clear()
            self.query_one("#search", Input).value = ""
        self.page_start = 0
        self.reload()

    @on(Select.Changed)
    def filter_changed(self) -> None:
        self.page_start = 0
        self.reload()

    def reload(self) -> None:
        self.load(self.filters(), self.page_start)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self, filters: dict[str, str | None], offset: int = 0) -> None:
        store = self.services.store
        try:
            reader = TraceReader(store)
            total = reader.count_runs(**filters)
            if offset >= total:  # the rows shrank under this page (a filter, a prune): back to the last
                offset = max(0, (total - 1) // PAGE * PAGE)
            rows = reader.runs(**filters, limit=PAGE, offset=offset, brief=True)
            values = reader.filter_values()
        except CompositeError as exc:
            self.app.call_from_thread(self.show_message, _missing(exc, store.path))
            return
        self.app.call_from_thread(self.show, rows, values, total, offset)

    def show_message(self, text: str) -> None:
        self.query_one("#runs", DataTable).clear()
        self.rows = []
        self._note(text)
        self.query_one("#traces-count", Static).update("")

    def _note(self, text: str) -> None:
        message = self.query_one("#traces-message", Static)
        message.update(text)
        message.set_class(bool(text), "shown")

    def show(
        self, rows: list[dict[str, Any]], values: dict[str, list[str]], total: int = 0, offset: int = 0
    ) -> None:
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
        self.rows, self.total, self.page_start = rows, max(total, len(rows)), offset
        theme = self.app.theme_variables
        cells = [
            [
                Text(created(row["created_at"])),
                Text(str(row["mode"])),
                Text(input_line(row.get("input_head"))),
                Text(str(row["source"] or "")),  # Text: a value is never read as markup
                status_text(row["status"] or "", theme),
                Text(str(row["calls"] or 0), justify="right"),
                Text(units.tokens(row["prompt_tokens"], row["completion_tokens"]), justify="right"),
                Text(run_cost(row), justify="right"),
                Text(units.duration(row["latency_ms"]), justify="right"),
                Text(str(row["id"])),
            ]
            for row in rows
        ]
        fill(table, COLUMNS, cells, [str(row["id"]) for row in rows])
        if keep is not None and keep in {str(r["id"]) for r in rows}:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        filtered = any(self.filters().values())
        self.query_one("#traces-count", Static).update(page_count(offset, len(rows), self.total, filtered))
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


# What SQLite says of a file that is damaged or not a database at all.
_CORRUPT = ("not a database", "malformed", "corrupt", "encrypted")


def store_problem(exc: BaseException, path: object, *, waiting: str) -> str:
    """One line on why the trace database at `path` cannot be read: corrupt (it will not heal by
    waiting), not readable yet (a new or busy file: `waiting` says what to wait for), or the error."""
    where = units.short_path(path)
    reason = exc.reason if isinstance(exc, TraceStoreUnreadable) else str(exc)
    if any(word in reason.lower() for word in _CORRUPT):
        return (
            f"The trace database {where} is corrupt ({units.without_paths(reason, path)}): "
            "move it aside to start a new one, or repair it with sqlite3's .recover."
        )
    if isinstance(exc, TraceStoreUnreadable):
        return f"The trace database {where} cannot be read yet ({exc.reason}). {waiting}"
    return f"{units.without_paths(str(exc), path)}. {waiting}"


def _missing(exc: BaseException, path: object) -> str:
    return store_problem(exc, path, waiting="Runs appear here once one is recorded.")
