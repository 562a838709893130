"""One run from the trace database: its timeline, its step tree, and the selected step in full.
Opened from the Traces screen, the Run screen (ctrl+t) or `composite tui --trace RUN_ID`."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Static, Tree
from textual.widgets.tree import TreeNode

from composite_cli.errors import CompositeError
from composite_cli.runner import stop_sentence
from composite_cli.traces.reader import TraceReader
from composite_cli.traces.steptree import StepNode, loop_rounds, step_tree, walk
from composite_cli.tui import units
from composite_cli.tui.run_state import Span
from composite_cli.tui.screens.base import STYLES, AppScreen, Command
from composite_cli.tui.screens.traces import created, input_line
from composite_cli.tui.widgets.step_detail import run_summary, step_detail
from composite_cli.tui.widgets.step_table import status_text
from composite_cli.tui.widgets.timeline import Timeline
from composite_cli.tui.worker_messages import DbChanged


def spans_of(steps: list[dict[str, Any]]) -> list[Span]:
    """Timeline bars from step rows (offsets and latencies are in the trace)."""
    out = []
    for node, _ in walk(step_tree(steps)):
        row = node.row
        start = float(row.get("offset_ms") or 0.0) / 1000
        kind = str(row.get("kind"))
        label = str(row.get("name")) if kind == "llm" else f"{row.get('name')} ({kind})"
        end = start + float(row.get("latency_ms") or 0.0) / 1000
        out.append(
            Span(
                str(row["id"]),
                label,
                int(row.get("depth") or 0),
                start,
                end,
                str(row.get("status")),
                kind == "llm",
            )
        )
    return out


def unpriced_calls(steps: list[dict[str, Any]]) -> int:
    """Answered model calls without a price (shown as `n unpriced` next to the known cost)."""
    return sum(
        1 for s in steps if s.get("kind") == "llm" and s.get("status") == "ok" and s.get("cost_usd") is None
    )


class TraceScreen(AppScreen):
    CSS_PATH = STYLES / "trace.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id
        self.run: dict[str, Any] | None = None
        self.steps: dict[str, dict[str, Any]] = {}

    def compose(self) -> Any:
        yield Static(f"trace {self.run_id}", id="trace-title")
        yield Static("Loading…", id="trace-summary")
        with VerticalScroll(id="trace-timeline-box"):
            yield Timeline("No steps recorded.", id="trace-timeline")
        with Horizontal(id="trace-bottom"):
            yield Tree("run", id="step-tree")
            with VerticalScroll(id="step-detail-box"):
                yield Static(
                    "Select a step to see its request, response, notes, tokens and cost.", id="step-detail"
                )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#trace-timeline-box").border_title = "timeline"
        self.query_one("#step-tree").border_title = "steps"
        self.query_one("#step-detail-box").border_title = "step"
        self.query_one("#step-tree", Tree).focus()
        # the tree's and summary's colours come from the theme: draw them again when it changes
        self.app.theme_changed_signal.subscribe(self, self._on_theme_changed)

    def _on_theme_changed(self, _theme: Any) -> None:
        if self.run is not None:
            self.show(self.run, list(self.steps.values()))

    def commands(self) -> list[Command]:
        return [("Refresh this trace", "Read the run again", self.action_reload)]

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.load()

    def on_db_changed(self, message: DbChanged) -> None:
        self.seen_version = message.version
        if self.run is None or self.run.get("status") == "running":  # a finished run does not change
            self.load()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self) -> None:
        store = self.services.store
        try:
            if self.services.runner.store is store:
                self.services.runner.flush()  # this process's own last run, written to disk first
            run, steps, _ = TraceReader(store).trace(self.run_id)
        except CompositeError as exc:
            self.app.call_from_thread(self.show_error, units.without_paths(str(exc), store.path))
            return
        self.app.call_from_thread(self.show, run, steps)

    def show_error(self, text: str) -> None:
        self.query_one("#trace-summary", Static).update(
            Text(text, style=self.app.theme_variables.get("error", ""))
        )
        self.notify(text, title="Cannot open the trace", severity="error")

    def show(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        first_load = self.run is None
        run = {**run, "unpriced_calls": unpriced_calls(steps)}
        self.run, self.run_id = run, str(run["id"])
        self.steps = {str(s["id"]): s for s in steps}
        self.query_one("#trace-title", Static).update(f"trace {run['id']} · {created(run['created_at'])} UTC")
        self.query_one("#trace-summary", Static).update(self._summary(run))
        spans = spans_of(steps)
        total = float(run.get("latency_ms") or 0.0) / 1000
        self.query_one(Timeline).show(spans, total)
        tree: Tree[str] = self.query_one("#step-tree", Tree)
        selected = tree.cursor_node.data if tree.cursor_node is not None else None
        tree.clear()
        root = Text(f"{run['mode']} ({units.duration(run.get('latency_ms'))})")
        if run.get("input"):
            root.append(f" {input_line(run.get('input'), 30)}")  # not dim: the cursor row must stay readable
        tree.root.set_label(root)
        tree.root.data = None
        nodes = step_tree(steps)
        self._add(tree.root, nodes, loop_rounds(nodes))
        tree.root.expand_all()
        if first_load and spans:
            tree.move_cursor_to_line(1)
        elif selected is not None:
            self._select(tree, selected)

    def _summary(self, run: dict[str, Any]) -> Text:
        """The run's one-line summary, then why it failed or why it is partial."""
        theme = self.app.theme_variables
        summary = Text(run_summary(run))
        if run.get("error"):
            summary.append(f"\nerror: {run['error']}", style=theme.get("error", ""))
        elif run.get("status") == "partial":
            sentence = stop_sentence(str(run.get("mode")), run.get("stopped_by"))
            summary.append(f"\npartial: {sentence}", style=theme.get("warning", ""))
        return summary

    def _run_detail(self, run: dict[str, Any]) -> Text:
        """The root node's detail: the run's summary, its input and its final answer in full."""
        out = self._summary(run)
        for title, key, missing in (
            ("input", "input", "(none recorded)"),
            ("answer", "output", "(no answer)" if run.get("status") != "running" else "(still running)"),
        ):
            out.append(f"\n\n{title}\n", style="bold underline")  # readable in both themes
            value = run.get(key)
            out.append(str(value) if value else missing, style="" if value else "dim")
        return out

    def _add(self, parent: TreeNode[str], nodes: list[StepNode], rounds: dict[str, int]) -> None:
        """Tree nodes for `nodes`; the children of a loop step are labelled with their round."""
        theme = self.app.theme_variables
        for node in nodes:
            row = node.row
            kind = str(row["kind"])
            label = Text(f"{row['name']} " if kind == "llm" else f"{row['name']} ({kind}) ")
            if node.id in rounds:
                label = Text(f"r{rounds[node.id]} ").append_text(label)
            label.append_text(status_text(str(row["status"]), theme))
            label.append(" ")
            label.append(units.duration(row.get("latency_ms")))  # not dim: under 3:1 on the cursor row
            child = parent.add(label, data=node.id, expand=True, allow_expand=bool(node.children))
            self._add(child, node.children, rounds)

    def _select(self, tree: Tree[str], step_id: str) -> None:
        for line in range(tree.last_line + 1):
            node = tree.get_node_at_line(line)
            if node is not None and node.data == step_id:
                tree.move_cursor_to_line(line)
                return

    @on(Tree.NodeHighlighted, "#step-tree")
    def step_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        step = self.steps.get(event.node.data or "")
        detail = self.query_one("#step-detail", Static)
        self.query_one(Timeline).select(event.node.data)
        if step is None:
            detail.update(self._run_detail(self.run) if self.run else "")
            return
        detail.update(step_detail(step, self.app.theme_variables))
        self.query_one("#step-detail-box", VerticalScroll).scroll_home(animate=False)

    @on(Timeline.Selected)
    def bar_clicked(self, event: Timeline.Selected) -> None:
        self._select(self.query_one("#step-tree", Tree), event.key)
