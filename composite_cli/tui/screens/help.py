"""The help screen: what each screen is for and every key, read from the bindings themselves."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from composite_cli.tui.screens.base import STYLES

ABOUT = {
    "RunScreen": "Run: pick a mode and a profile, type a prompt, ctrl+r runs it. Steps and experts "
    "appear as they start, with their text; the timeline grows; the answer streams. Esc cancels. "
    "The next prompt continues the conversation (ctrl+n starts a new one).",
    "TracesScreen": "Traces: recent runs from the trace database, refreshed when any process records "
    "one. Filter by mode, status and source; Enter opens a run.",
    "TraceScreen": "Trace: the run's timeline and step tree; pick a step to see its request, "
    "response, notes, error, tokens and cost.",
    "EvalsScreen": "Evals: eval runs and their comparison (score with CI, latency, cost, paired "
    "tests) with quality/cost and quality/latency plots. n starts an eval.",
    "DashboardScreen": "Dashboard: requests, latency, tokens, cost, depth, tool use and errors over "
    "a time window (w changes it), refreshed live.",
    "ModesScreen": "Modes: browse modes, their step tree and YAML; v validates, errors at their line.",
}


class HelpScreen(ModalScreen[None]):
    CSS_PATH = STYLES / "help.tcss"
    BINDINGS = [Binding("escape,f1,q", "close", "Close")]

    def __init__(self, under: Screen[Any]):
        super().__init__()
        self.under = under

    def compose(self) -> Any:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        seen: set[str] = set()
        for source in (self.under, self.app):
            for binding in getattr(source, "BINDINGS", []):
                if isinstance(binding, Binding) and binding.description and binding.key not in seen:
                    seen.add(binding.key)
                    table.add_row(self.app.get_key_display(binding), binding.description)
        table.add_row("^p", "Command palette (every screen and action)")
        table.add_row("tab", "Next field")
        about = ABOUT.get(type(self.under).__name__, "")
        with VerticalScroll(id="help-box"):
            yield Static(Text(about), id="help-about")
            yield Static(table, id="help-keys")
            yield Static(
                Text("Mouse: click the screen names at the top, rows, bars and buttons.", style="dim")
            )

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "help · Esc closes"

    def action_close(self) -> None:
        self.dismiss()
