"""The Dashboard: requests over time by mode, p50/p95 latency, tokens and cost per request by
mode and by model, the distribution of depth (internal calls per request), the share of requests
that used tools, and error rates, over the span that holds the recent runs ("fit", the default) or
the last 1h / 24h / 7d; refreshed as runs are recorded. Costs are written the one way
(units.cost): the known total plus how many calls or runs had no price."""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static, Tab, Tabs

from composite_cli.errors import CompositeError
from composite_cli.traces import queries
from composite_cli.tui import units
from composite_cli.tui.screens.base import STYLES, AppScreen, Command
from composite_cli.tui.screens.traces import store_problem
from composite_cli.tui.widgets.bars import StackedBars, histogram
from composite_cli.tui.widgets.navbar import NavBar
from composite_cli.tui.widgets.tables import fill

MODE_COLUMNS = ("mode", "requests", "errors", "p50", "p95", "tokens/req", "cost/req", "tools")
MODEL_COLUMNS = ("model", "calls", "requests", "tokens/req", "cost/req", "cost", "share of cost")


def _right(text: str) -> Text:
    return Text(text, justify="right")


class DashboardScreen(AppScreen):
    CSS_PATH = STYLES / "dashboard.tcss"
    BINDINGS = [
        Binding("w", "next_window", "Window"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.window = queries.FIT
        self.data: queries.Dashboard | None = None

    def compose(self) -> Any:
        yield NavBar("dashboard")
        with Horizontal(id="dash-top"):
            yield Tabs(
                *(Tab(name, id=f"w{name}") for name in queries.WINDOW_NAMES),
                active=f"w{self.window}",
                id="window",
            )
            yield Static("", id="dash-summary")
        with Horizontal(id="dash-charts"):
            yield StackedBars("requests over time by mode", id="dash-requests")
            yield Static("", id="dash-depth")
        with Vertical(id="dash-tables"):
            yield DataTable(id="dash-modes", cursor_type="row")
            yield DataTable(id="dash-models", cursor_type="row")
        yield Static("", id="dash-message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#dash-depth").border_title = "internal calls per request"
        self.query_one("#dash-modes").border_title = "by mode"
        self.query_one("#dash-models").border_title = "by model (most cost first)"
        fill(self.query_one("#dash-modes", DataTable), MODE_COLUMNS, [])
        fill(self.query_one("#dash-models", DataTable), MODEL_COLUMNS, [])

    def commands(self) -> list[Command]:
        out: list[Command] = [("Refresh the dashboard", "Read the trace database again", self.action_reload)]
        for name in queries.WINDOW_NAMES:
            fit = name == queries.FIT
            out.append(
                (
                    "Dashboard window: fit to the data" if fit else f"Dashboard window: last {name}",
                    "From the oldest recent run to now" if fit else f"Aggregate the last {name}",
                    partial(self.set_window, name),
                )
            )
        return out

    def action_next_window(self) -> None:
        names = list(queries.WINDOW_NAMES)
        self.set_window(names[(names.index(self.window) + 1) % len(names)])

    def set_window(self, name: str) -> None:
        self.query_one("#window", Tabs).active = f"w{name}"

    @on(Tabs.TabActivated, "#window")
    def window_changed(self, event: Tabs.TabActivated) -> None:
        name = str(event.tab.id or f"w{queries.FIT}")[1:]
        if name != self.window:
            self.window = name
            self.reload()

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.load(self.window)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self, window: str) -> None:
        try:
            data = queries.dashboard(self.services.store, window, now=self.services.clock())
        except CompositeError as exc:
            text = store_problem(
                exc, self.services.store.path, waiting="The dashboard fills in once runs are recorded."
            )
            self.app.call_from_thread(self.show_message, text)
            return
        self.app.call_from_thread(self.show, data)

    def show_message(self, text: str) -> None:
        self.query_one("#dash-message", Static).update(text)

    def show(self, data: queries.Dashboard) -> None:
        self.data = data
        theme = self.app.theme_variables
        # requests and cost first: they stay in view on an 80-column terminal
        cost = units.cost(data.cost_usd, data.unpriced_calls)
        summary = Text(f"{data.requests} requests · cost {cost} · ")
        summary.append(
            f"errors {units.percent(data.error_rate)}", style=theme.get("error", "") if data.errors else ""
        )
        summary.append(f" · used tools {units.percent(data.tool_fraction)}")
        self.query_one("#dash-summary", Static).update(summary)
        self.query_one(StackedBars).show(data.bucket_labels, data.requests_by_mode)
        depth = [(label, float(count)) for label, count in data.depth]
        self.query_one("#dash-depth", Static).update(
            histogram(
                depth,
                max(20, self.query_one("#dash-depth").content_size.width),
                style=theme.get("accent", ""),
            )
        )
        mode_rows: list[list[str | Text]] = [
            [
                Text(m.mode),
                _right(str(m.requests)),
                _right(units.percent(m.error_rate)),
                _right(units.duration(m.p50_ms)),
                _right(units.duration(m.p95_ms)),
                _right(f"{m.tokens_per_request:.0f}"),
                _right(units.cost(m.cost_per_request, m.unpriced_calls)),
                _right(units.percent(m.tool_fraction, 0)),
            ]
            for m in data.modes
        ]
        fill(self.query_one("#dash-modes", DataTable), MODE_COLUMNS, mode_rows)
        model_rows: list[list[str | Text]] = [
            [
                Text(s.model),  # a name is never read as markup
                _right(str(s.calls)),
                _right(str(s.requests)),
                _right(f"{s.tokens_per_request:.0f}"),
                _right(units.cost(s.cost_per_request, s.unpriced_calls)),
                _right(units.cost(s.cost_usd, s.unpriced_calls)),
                _right(units.percent(s.cost_share)),
            ]
            for s in data.models
        ]
        fill(self.query_one("#dash-models", DataTable), MODEL_COLUMNS, model_rows)
        self.query_one("#dash-message", Static).update("" if data.requests else "No requests in this window.")
