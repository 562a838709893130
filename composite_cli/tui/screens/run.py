"""The Run screen: pick a mode and a profile, type a prompt, run it, and watch it live: steps and
experts as they start, their text streaming in, the timeline growing, the answer streaming, and
the totals at the end. Esc cancels; the next prompt continues the conversation."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Label, Select, Static, TextArea
from textual.worker import Worker, WorkerState

from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.errors import CompositeError, ModeValidationError
from composite_cli.runner import stop_reason, stop_sentence
from composite_cli.tui import units
from composite_cli.tui.bridge import EventBridge
from composite_cli.tui.run_state import RunState
from composite_cli.tui.screens.base import STYLES, AppScreen, Command, error_text
from composite_cli.tui.widgets.conversation import Conversation
from composite_cli.tui.widgets.navbar import NavBar
from composite_cli.tui.widgets.step_table import StepTable
from composite_cli.tui.widgets.timeline import Timeline
from composite_cli.tui.worker_messages import EngineEvent, RunEnded, TextBatch

# The engine streams every call's text (not only the final step's) when RunRequest has this flag.


class RunScreen(AppScreen):
    CSS_PATH = STYLES / "run.tcss"
    # Focused when the screen is first shown, before any key is read: with the default (the first
    # focusable widget, the mode picker) keys typed while the app started went to the picker.
    AUTO_FOCUS = "#prompt"
    # Not priority bindings: a priority key is handled by the app the moment it is read, ahead of
    # keys still queued for the prompt (a paste or a fast typist's last letters, then ctrl+r), so
    # the run would see a partial or empty prompt. Bubbling up from the focused widget keeps order.
    BINDINGS = [
        Binding("ctrl+r", "run", "Run"),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+n", "new_conversation", "New chat"),
        Binding("ctrl+t", "open_trace", "Trace"),
        Binding("ctrl+l", "focus_prompt", "Prompt", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state = RunState()
        self.messages: list[dict[str, Any]] = []  # the conversation so far (follow-ups continue it)
        self.worker: Worker[None] | None = None
        self.bridge: EventBridge | None = None
        self._ticker: Timer | None = None
        self._pending_prompt = ""
        self.invalid: dict[str, str] = {}  # mode name -> its first problem (cannot be picked)
        self.picked_mode: str | None = None
        self.queued: tuple[str, str, str] | None = None  # (mode, profile, prompt) waiting for warm-up

    def compose(self) -> Any:
        services = self.services
        library = services.runner.library
        names = library.names()
        self.invalid = invalid_modes(library, names)
        valid = [n for n in names if n not in self.invalid]
        mode: str | None
        try:
            mode = library.resolve(services.mode)
        except CompositeError:  # an unknown default mode just leaves the first valid one picked
            mode = None
        if mode not in valid:
            mode = valid[0] if valid else None
        self.picked_mode = mode
        profiles = services.profile_names()
        profile = services.profile or services.settings.profile.name
        yield NavBar("run")
        with Horizontal(id="run-controls"):
            yield Label("mode", classes="field-label")
            options = [(Text(f"{n} ✗ invalid", style="strike") if n in self.invalid else n, n) for n in names]
            yield Select(options, value=mode or Select.NULL, allow_blank=False, compact=True, id="mode")
            yield Label("profile", classes="field-label")
            yield Select(
                [(p, p) for p in profiles], value=profile, allow_blank=False, compact=True, id="profile"
            )
            yield Static("idle", id="run-status")
        prompt = TextArea(
            id="prompt", soft_wrap=True, compact=True, placeholder="Type a prompt · ctrl+r runs it"
        )
        prompt.cursor_blink = services.blink
        yield prompt
        yield StepTable(id="steps")
        with Horizontal(id="run-bottom"):
            with VerticalScroll(id="timeline-box"):
                yield Timeline("The timeline of the run appears here.", id="timeline")
            yield Conversation(id="conversation", placeholder="Answers stream here.")
        yield Static("", id="totals")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prompt", TextArea).focus()
        self.query_one("#timeline-box").border_title = "timeline"
        self.query_one("#conversation").border_title = "conversation"

    def on_select_changed(self, event: Select.Changed) -> None:
        """An invalid mode cannot be picked: the previous one comes back, with the first problem."""
        if event.select.id != "mode":
            return
        if event.value in self.invalid:
            self.notify(
                f"{event.value} is invalid ({self.invalid[str(event.value)]}); fix it on the Modes screen.",
                title="Invalid mode",
                severity="error",
            )
            select: Select[str] = self.query_one("#mode", Select)
            with select.prevent(Select.Changed):
                select.value = self.picked_mode if self.picked_mode is not None else Select.NULL
        elif isinstance(event.value, str):
            self.picked_mode = event.value

    def commands(self) -> list[Command]:
        return [
            ("Run the prompt", "Run the prompt with the chosen mode and profile", self.action_run),
            ("Cancel the run", "Cancel the running request", self.action_cancel),
            ("New conversation", "Forget the conversation so far", self.action_new_conversation),
            ("Open the last run's trace", "Show the timeline and step tree", self.action_open_trace),
        ]

    # -- actions ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.state in (WorkerState.PENDING, WorkerState.RUNNING)

    def action_run(self) -> None:
        if self.running:
            self.notify("A run is in progress; Esc cancels it.", severity="warning")
            return
        if self.queued is not None:
            self.notify("A run is queued; it starts when the models are loaded.", severity="warning")
            return
        # Read now, from the widget: the run gets exactly the text in the box at ctrl+r.
        prompt = self.query_one("#prompt", TextArea).text.strip()
        if not prompt:
            self.notify("Type a prompt first.", severity="warning")
            return
        mode = self.query_one("#mode", Select).value
        profile = self.query_one("#profile", Select).value
        if not isinstance(mode, str) or mode in self.invalid:
            self.notify("Pick a valid mode first.", severity="warning")
            return
        if not self.composite.models_ready:
            self.queued = (mode, str(profile), prompt)
            self.query_one("#run-status", Static).update("loading models… (run queued, Esc drops it)")
            self.composite.when_models_ready(self._start_queued)
            return
        self.start(mode, str(profile), prompt)

    def _start_queued(self) -> None:
        queued, self.queued = self.queued, None
        if queued is not None:
            self.start(*queued)

    def start(self, mode: str, profile: str, prompt: str) -> None:
        """Run `prompt` as the next turn of the conversation."""
        self.state = RunState(mode=mode, profile=profile, status="running")
        self._pending_prompt = prompt
        self.query_one(StepTable).reset()
        self.query_one(Timeline).show([], 0.0)
        self.query_one(Conversation).add_prompt(prompt)
        self.query_one("#totals", Static).update("")
        turn = [*self.messages, {"role": "user", "content": prompt}]
        self.worker = self.run_turn(mode, profile, turn)
        if self._ticker is None:
            self._ticker = self.set_interval(self.services.tick_interval, self.refresh_live)
        else:
            self._ticker.resume()
        self.refresh_live()

    def action_cancel(self) -> None:
        if self.queued is not None:
            self.queued = None
            self.query_one("#run-status", Static).update("idle")
            self.notify("Queued run dropped.", severity="warning")
            return
        if self.running and self.worker is not None:
            self.worker.cancel()

    def action_new_conversation(self) -> None:
        if self.running:
            self.notify("Cancel the run first (Esc).", severity="warning")
            return
        self.messages = []
        self.state = RunState()
        self.query_one(StepTable).reset()
        self.query_one(Timeline).show([], 0.0)
        self.query_one(Conversation).clear()
        self.query_one("#totals", Static).update("")
        self.query_one("#run-status", Static).update("new conversation")

    def action_open_trace(self) -> None:
        if self.state.run_id is None:
            self.notify("No run yet.", severity="warning")
            return
        from composite_cli.tui.screens.trace import TraceScreen

        self.app.push_screen(TraceScreen(self.state.run_id))

    def action_focus_prompt(self) -> None:
        self.query_one("#prompt", TextArea).focus()

    # -- the worker ---------------------------------------------------------------------------
    @work(exclusive=True, group="run", exit_on_error=False)
    async def run_turn(self, mode: str, profile: str, messages: list[dict[str, Any]]) -> None:
        services = self.services
        bridge = self.bridge = EventBridge(self, services.clock, services.delta_interval)
        request = RunRequest(
            messages=messages,
            generation=dict(services.generation),
            source="tui",
            stream=True,
            stream_all=True,
        )
        try:
            result = await services.runner.run(
                mode, request, profile=services.profile_named(profile), subscribers=[bridge]
            )
        except asyncio.CancelledError:
            bridge.flush()
            self.post_message(RunEnded(cancelled=True))
            raise
        except Exception as exc:  # noqa: BLE001 - a bad mode or a failed provider is shown, never crashes the app
            bridge.flush()
            self.post_message(RunEnded(error=error_text(exc)))
            return
        bridge.flush()
        self.post_message(RunEnded(result=result))

    # -- messages -----------------------------------------------------------------------------
    def on_engine_event(self, message: EngineEvent) -> None:
        self.state.apply(message.event, message.at)
        self.refresh_live()

    def on_text_batch(self, message: TextBatch) -> None:
        self.state.apply_text(message)
        if message.answer:
            self.query_one(Conversation).set_answer(self.state.answer)
        self.refresh_live()

    def on_run_ended(self, message: RunEnded) -> None:
        if self._ticker is not None:
            self._ticker.pause()
        conversation = self.query_one(Conversation)
        state = self.state
        if message.result is not None:
            result = message.result
            self.messages += [{"role": "user", "content": self._pending_prompt}, result.message]
            if not state.answer:  # e.g. a final tool call: nothing streamed
                state.answer = result.text or _tool_calls_text(result.message)
            conversation.set_answer(state.answer)
            if result.status == "partial":
                conversation.add_note(f"Partial answer: {stop_sentence(result.mode, result.stopped_by)}.")
            self.query_one("#prompt", TextArea).clear()
        elif message.cancelled:
            if state.status == "running":
                state.status = "cancelled"
            conversation.add_note("Cancelled.")
            self.notify("Run cancelled.", severity="warning")
        else:
            state.status = "error" if state.status in ("running", "idle") else state.status
            state.error = state.error or message.error
            conversation.add_note(f"Error: {message.error}", error=True)
            self.notify(message.error or "The run failed.", title="Run failed", severity="error", timeout=8)
        self.refresh_live()

    # -- drawing ------------------------------------------------------------------------------
    def refresh_live(self) -> None:
        state = self.state
        now = self.services.clock()
        self.query_one(StepTable).sync(state, now)
        self.query_one(Timeline).show(state.spans(now), state.elapsed(now))
        self.query_one("#run-status", Static).update(self._status_line(now))
        if not state.running and state.status not in ("idle",):
            self.query_one("#totals", Static).update(self._totals())

    def _status_line(self, now: float) -> Text:
        state = self.state
        if state.status == "idle":
            return Text("idle")
        theme = self.app.theme_variables
        color = {"running": "accent", "ok": "success", "partial": "warning", "cancelled": "warning"}
        line = Text(state.status, style=theme.get(color.get(state.status, "error"), ""))
        line.append(f" · {units.seconds(state.elapsed(now))} · {state.calls} calls")
        if len(self.messages) > 1:
            line.append(f" · turn {len(self.messages) // 2 + (1 if state.running else 0)}")
        return line

    def _totals(self) -> Text:
        s = self.state
        line = Text()
        if s.status == "partial":
            line.append(
                f"partial: stopped at {stop_reason(s.stopped_by)}",
                style=self.app.theme_variables.get("warning", ""),
            )
            line.append(" · ")
        line.append(
            f"calls {s.calls} · tokens {units.tokens(s.prompt_tokens, s.completion_tokens)} · "
            f"cost {units.cost(s.cost_usd, s.unpriced)} · latency {units.duration(s.elapsed(0) * 1000)}"
        )
        return line


def invalid_modes(library: ModeLibrary, names: list[str]) -> dict[str, str]:
    """Mode name → its first problem, for the modes that do not load."""
    invalid: dict[str, str] = {}
    for name in names:
        try:
            library.load(name)
        except ModeValidationError as exc:
            invalid[name] = exc.errors[0].one_line() if exc.errors else str(exc)
        except CompositeError as exc:
            invalid[name] = error_text(exc)
    return invalid


def _tool_calls_text(message: dict[str, Any]) -> str:
    calls = message.get("tool_calls") or []
    return "\n".join(
        f"[tool call] {(c.get('function') or {}).get('name')}({(c.get('function') or {}).get('arguments')})"
        for c in calls
    )
