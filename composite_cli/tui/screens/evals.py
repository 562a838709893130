"""The Evals screen: eval runs from the trace database and, for the selected one, the comparison
from the eval report (score with CI, latency, cost, paired results) with quality/cost and
quality/latency plots per mode. `n` starts an eval (file and modes), with live progress per mode."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, ProgressBar, Static

from composite_cli.errors import CompositeError
from composite_cli.evals.plot import chart_points, unknown_note
from composite_cli.traces.reader import TraceReader
from composite_cli.tui import units
from composite_cli.tui.screens.base import STYLES, AppScreen, Command, error_text
from composite_cli.tui.screens.new_eval import EvalRequest, NewEvalScreen
from composite_cli.tui.screens.traces import created
from composite_cli.tui.widgets.navbar import NavBar
from composite_cli.tui.widgets.plots import QualityPlot, mode_marker
from composite_cli.tui.widgets.step_table import status_text
from composite_cli.tui.widgets.tables import fill
from composite_cli.tui.worker_messages import EvalEnded, EvalProgressed

if TYPE_CHECKING:
    from composite_cli.evals.runner import Progress
    from composite_cli.evals.session import EvalSession

RUN_COLUMNS = ("created (UTC)", "file", "modes", "status", "results", "eval id")


def pair_text(pair: dict[str, Any], theme: dict[str, str]) -> Text:
    """One paired comparison: difference with CI, the test, wins, and the verdict."""
    out = Text()
    out.append(f"{pair['a']} vs {pair['b']}", style="bold")
    if pair.get("diff") is not None:
        scale = 100 if pair.get("test") == "exact McNemar" else 1
        unit = " pts" if scale == 100 else ""
        low, high = pair["ci"]
        out.append(
            f"  {pair['diff'] * scale:+.1f}{unit} (95% CI {low * scale:+.1f} to {high * scale:+.1f})"
            f", {_p_text(pair)}, {pair['test']}, n={pair['n']}"
        )
    out.append(
        f"\n  won alone: {pair['a']} {pair['wins_a']}, {pair['b']} {pair['wins_b']}, ties {pair['ties']}"
    )
    style = theme.get("success", "") if pair.get("separable") else "dim"
    out.append(f"\n  {pair['verdict']}", style=style)
    return out


def _p_text(pair: dict[str, Any]) -> str:
    """The pair's p-value as the verdict uses it: Holm-adjusted when the eval compared several pairs."""
    comparisons = int(pair.get("comparisons") or 1)
    adjusted = pair.get("p_adjusted")
    if comparisons > 1 and adjusted is not None:
        return f"p={adjusted:.3g} (Holm over {comparisons})"
    return f"p={pair['p']:.3g}"


class EvalsScreen(AppScreen):
    CSS_PATH = STYLES / "evals.tcss"
    BINDINGS = [
        Binding("n", "new_eval", "New eval"),
        Binding("x", "stop_eval", "Stop eval"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] | None = None
        self.eval_ids: list[str] = []
        self.shown: str | None = None
        self.session: EvalSession | None = None  # the eval running now

    def compose(self) -> Any:
        yield NavBar("evals")
        yield DataTable(id="eval-runs", cursor_type="row")
        yield DataTable(id="eval-report", cursor_type="none")
        with Horizontal(id="eval-bottom"):
            with VerticalScroll(id="eval-pairs-box"):
                yield Static("", id="eval-pairs")
            yield QualityPlot("score vs mean $ per case", "$", id="plot-cost")
            yield QualityPlot("score vs p50 latency", "s", id="plot-latency")
        yield Vertical(id="eval-progress")
        yield Static("", id="eval-message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#eval-runs").border_title = "eval runs"
        self.query_one("#eval-report").border_title = "comparison"
        self.query_one("#eval-pairs-box").border_title = "paired results"
        self.query_one("#eval-progress").border_title = "running eval"
        self.query_one("#eval-progress").display = False
        from composite_cli.evals.report import MODE_HEADERS

        table = self.query_one("#eval-runs", DataTable)
        fill(table, RUN_COLUMNS, [])
        fill(self.query_one("#eval-report", DataTable), MODE_HEADERS, [])
        table.focus()

    def commands(self) -> list[Command]:
        return [
            ("Start an eval", "Pick an eval file and modes, and run them", self.action_new_eval),
            ("Stop the running eval", "Finished results are kept", self.action_stop_eval),
            ("Refresh eval runs", "Read the trace database again", self.action_reload),
        ]

    # -- the list and the report ----------------------------------------------------------------
    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.load_runs()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load_runs(self) -> None:
        try:
            rows = TraceReader(self.services.store).eval_runs()
        except CompositeError as exc:
            text = units.without_paths(str(exc), self.services.store.path)
            self.app.call_from_thread(self.show_message, f"{text}. Start an eval with n.")
            return
        self.app.call_from_thread(self.show_runs, rows)

    def show_message(self, text: str) -> None:
        self.query_one("#eval-message", Static).update(text)

    def show_runs(self, rows: list[dict[str, Any]]) -> None:
        table = self.query_one("#eval-runs", DataTable)
        keep = self.shown
        theme = self.app.theme_variables
        self.eval_ids = [str(r["id"]) for r in rows]
        cells: list[list[str | Text]] = [
            [
                created(r["created_at"])[:16],
                Path(str(r["file"])).name,
                ",".join(json.loads(r["modes"] or "[]")),
                status_text(r["status"] or "", theme),
                Text(str(r["results"]), justify="right"),
                str(r["id"]),
            ]
            for r in rows
        ]
        fill(table, RUN_COLUMNS, cells, self.eval_ids)
        self.show_message("" if rows else "No eval runs yet. n starts one.")
        if keep in self.eval_ids:
            table.move_cursor(row=self.eval_ids.index(keep), animate=False)
            self.load_report(keep)
        elif self.eval_ids:
            table.move_cursor(row=0, animate=False)

    @on(DataTable.RowHighlighted, "#eval-runs")
    def eval_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and event.row_key.value != self.shown:
            self.load_report(str(event.row_key.value))

    @work(thread=True, exclusive=True, group="report", exit_on_error=False)
    def load_report(self, eval_run_id: str) -> None:
        from composite_cli.evals.report import build_report

        try:
            report = build_report(self.services.store, eval_run_id)
        except (CompositeError, ValueError) as exc:
            text = units.without_paths(str(exc), self.services.store.path)
            self.app.call_from_thread(self.show_message, f"Cannot build the report: {text}")
            return
        self.app.call_from_thread(self.show_report, report)

    def show_report(self, report: dict[str, Any]) -> None:
        from composite_cli.evals.report import MODE_HEADERS, mode_rows, partial_notes

        self.report = report
        self.shown = report["eval_run"]["id"]
        table = self.query_one("#eval-report", DataTable)
        # each mode's marker in the plots, in its colour: the plots' legend when they lack room
        rows: list[list[str | Text]] = []
        for i, (row, mode) in enumerate(zip(mode_rows(report), report["modes"], strict=True)):
            # the one cost format of the TUI: the known mean, and how many results had no price
            row[MODE_HEADERS.index("cost/case")] = units.cost(
                mode.get("cost_usd_mean_priced"), int(mode.get("unpriced") or 0)
            )
            rows.append([mode_marker(i) + Text(f" {row[0]}"), *(Text(c, justify="right") for c in row[1:])])
        fill(table, MODE_HEADERS, rows)
        ev = report["eval_run"]
        table.border_title = f"comparison · {ev['file']} · {ev['cases']} cases × {len(ev['modes'])} modes"
        theme = self.app.theme_variables
        pairs = Text("\n\n").join(pair_text(p, theme) for p in report["pairs"])
        legend = Text("$ / ⏱: on the quality/cost, quality/latency Pareto front", style="dim")
        notes = [Text(f"{note}.", style=theme.get("warning", "")) for note in partial_notes(report)]
        self.query_one("#eval-pairs", Static).update(
            Text("\n\n").join([*([pairs] if report["pairs"] else []), *notes, legend])
        )
        for axis in ("cost", "latency"):
            points = chart_points(report, axis)
            plot = self.query_one(f"#plot-{axis}", QualityPlot)
            plot.show(points, unknown_note(points, axis))
            # nothing to draw (every cost unknown): a narrow note, not an empty box
            plot.styles.width = "1fr" if plot.drawable else 24

    # -- running an eval --------------------------------------------------------------------------
    def action_new_eval(self) -> None:
        if self._eval_running():
            self.notify("An eval is running; x stops it.", severity="warning")
            return
        modes = self.services.runner.library.names()
        screen = NewEvalScreen(self.services.eval_files(), modes, ["direct"], blink=self.services.blink)
        self.app.push_screen(screen, self._new_eval_chosen)

    def _new_eval_chosen(self, request: EvalRequest | None) -> None:
        if request is not None:
            self.start_eval(request)

    def start_eval(self, request: EvalRequest) -> None:
        box = self.query_one("#eval-progress", Vertical)
        box.remove_children()
        box.display = True
        self.run_eval(request)

    def _eval_running(self) -> bool:
        return any(w.group == "eval" and w.is_running for w in self.workers)

    def action_stop_eval(self) -> None:
        if self.session is None or not self.session.stop():
            self.workers.cancel_group(self, "eval")  # still starting: no session to stop yet

    @work(exclusive=True, group="eval", exit_on_error=False)
    async def run_eval(self, request: EvalRequest) -> None:
        try:
            # a new eval or an interrupted one resumed, on the profile picked in the dialog
            session = await asyncio.to_thread(request.open, self.services)
        except Exception as exc:  # noqa: BLE001 - a bad file or mode is shown, never crashes the app
            self.post_message(EvalEnded(None, "error", error_text(exc)))
            return
        self.session = session
        session.subscribe(self._on_progress)
        try:
            status = await session.run()
        except asyncio.CancelledError:
            self.post_message(EvalEnded(session.eval_run_id, "interrupted"))
            raise
        except Exception as exc:  # noqa: BLE001 - shown; the session recorded the eval as failed
            self.post_message(EvalEnded(session.eval_run_id, "error", error_text(exc)))
            return
        finally:
            self.session = None
        self.post_message(EvalEnded(session.eval_run_id, status))

    def _on_progress(self, progress: Progress) -> None:
        rows = [
            (
                m,
                progress.done.get(m, 0),
                total,
                progress.errors.get(m, 0),
                progress.partial.get(m, 0),
                progress.accuracy(m),
            )
            for m, total in progress.total.items()
        ]
        self.post_message(EvalProgressed(rows))

    def on_eval_progressed(self, message: EvalProgressed) -> None:
        box = self.query_one("#eval-progress", Vertical)
        for mode, done, total, errors, partial, score in message.rows:
            key = f"progress-{mode.replace('.', '_')}"
            bars = box.query(f"#{key}")
            if not bars:
                row = Horizontal(
                    Static(mode, classes="progress-mode"),
                    ProgressBar(total, show_eta=False, id=key),
                    Static("", classes="progress-note", id=f"{key}-note"),
                    classes="progress-row",
                )
                box.mount(row)
                continue
            bar = bars.first(ProgressBar)
            bar.update(total=total, progress=done)
            capped = f" · partial {partial}" if partial else ""
            shown = "-" if score is None else f"{score * 100:.0f}%"
            note = f"{done}/{total} · errors {errors}{capped} · score {shown}"
            box.query_one(f"#{key}-note", Static).update(note)

    def on_eval_ended(self, message: EvalEnded) -> None:
        if message.error:
            self.notify(message.error, title="Eval failed", severity="error", timeout=8)
        elif message.status == "interrupted":
            self.notify("Eval stopped; finished results are kept.", severity="warning")
        else:
            self.notify(f"Eval {message.eval_run_id} {message.status}.")
        if message.eval_run_id is not None:
            self.shown = None
            self.load_report(message.eval_run_id)
            self.reload()
