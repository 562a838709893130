"""The composite TUI: five screens as app modes (Run, Traces, Evals, Dashboard, Modes), a help
screen, command-palette commands, and one cheap poll of the trace database that tells the
screens when any process (this one, `serve`, `eval`, ...) wrote to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette
from textual.screen import Screen
from textual.theme import BUILTIN_THEMES, Theme
from textual.worker import Worker, WorkerState

from composite_cli.config import read_tui_theme, save_tui_theme
from composite_cli.traces.queries import ChangeWatcher
from composite_cli.tui.screens.base import STYLES, AppScreen, error_text
from composite_cli.tui.screens.dashboard import DashboardScreen
from composite_cli.tui.screens.evals import EvalsScreen
from composite_cli.tui.screens.help import HelpScreen
from composite_cli.tui.screens.modes import ModesScreen
from composite_cli.tui.screens.run import RunScreen
from composite_cli.tui.screens.trace import TraceScreen
from composite_cli.tui.screens.traces import TracesScreen
from composite_cli.tui.services import TuiServices
from composite_cli.tui.widgets.navbar import SCREENS
from composite_cli.tui.worker_messages import DbChanged


def readable_light_theme() -> Theme:
    """Textual's light theme with darker accent, warning, success and footer keys: its own orange
    (#ffa62b) and green on light grey are below a 2:1 contrast; these are at 3.5:1 or more on
    every light background the theme uses (tests/test_tui_snapshots_ta.py checks each screen)."""
    light = BUILTIN_THEMES["textual-light"]
    return replace(
        light,
        accent="#8A4B00",
        warning="#8A4B00",
        success="#1A6B32",
        variables={**light.variables, "footer-key-foreground": "#005A9E"},
    )


class CompositeApp(App[None]):
    """`composite tui`."""

    TITLE = "composite"
    CSS_PATH = STYLES / "app.tcss"
    MODES = {
        "run": RunScreen,
        "traces": TracesScreen,
        "evals": EvalsScreen,
        "dashboard": DashboardScreen,
        "modes": ModesScreen,
    }
    BINDINGS = [
        *(Binding(key, f"go({name!r})", label, show=False) for name, key, _, label in SCREENS),
        *(
            Binding(fkey, f"go({name!r})", label, show=False, priority=True)
            for name, _, fkey, label in SCREENS
        ),
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        services: TuiServices,
        *,
        screen: str = "run",
        trace: str | None = None,
        theme: str | None = None,
    ):
        super().__init__()
        self.register_theme(readable_light_theme())  # replaces textual-light, same name
        # --theme, else the theme remembered from the last launch (ignored if unknown)
        chosen = theme or read_tui_theme()
        if chosen in self.available_themes:
            self.theme = chosen
        self._theme_flag = theme if theme in self.available_themes else None
        self.services = services
        self.start_screen = screen
        self.start_trace = trace
        self.db_version = 0
        self._watcher = ChangeWatcher(services.settings.db_path)
        self._db_token: object = None
        # False while LiteLLM is imported in a thread at start: a run asked for meanwhile waits
        # (`when_models_ready`) instead of importing it on the event loop and freezing the screen.
        self.models_ready = not services.warm_up
        self._on_ready: list[Callable[[], object]] = []
        if not services.animations:
            self.animation_level = "none"

    def on_mount(self) -> None:
        self._db_token = self._watcher.token()
        self.theme_changed_signal.subscribe(self, self.remember_theme)
        if self._theme_flag is not None:  # set before the signal was heard: remember it too
            self.remember_theme(self.get_theme(self._theme_flag) or self.current_theme)
        self.switch_mode(self.start_screen)
        if self.start_trace:
            self.push_screen(TraceScreen(self.start_trace))
        self.set_interval(self.services.poll_interval, self.poll_db)
        if self.services.warm_up:
            self.warm_up()

    def on_unmount(self) -> None:
        self._watcher.close()

    @work(thread=True, group="warm-up", exit_on_error=False)
    def warm_up(self) -> None:
        """Import LiteLLM off the UI thread now, so the first run does not freeze the screen."""
        from composite_cli.litellm_loader import get_litellm

        get_litellm()

    def remember_theme(self, theme: Theme) -> None:
        """Keep the theme picked (command palette, --theme) for the next launch."""
        try:
            save_tui_theme(theme.name)
        except OSError as exc:
            self.notify(f"Cannot remember the theme: {exc}", severity="warning")

    def when_models_ready(self, callback: Callable[[], object]) -> None:
        """Call `callback` on the event loop once the warm-up has ended (now, if it has)."""
        if self.models_ready:
            callback()
        else:
            self._on_ready.append(callback)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "warm-up" or not event.worker.is_finished:
            return
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.notify(error_text(event.worker.error), title="Cannot load LiteLLM", severity="error")
        self.models_ready = True
        waiting, self._on_ready = self._on_ready, []
        for callback in waiting:
            callback()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll_db(self) -> None:
        token = self._watcher.token()
        if token != self._db_token:
            self._db_token = token
            self.call_from_thread(self.db_changed)

    def db_changed(self) -> None:
        """Tell the visible screen that the trace database changed (others reload when shown)."""
        self.db_version += 1
        self.screen.post_message(DbChanged(self.db_version))

    def action_go(self, name: str) -> None:
        """Show screen `name`, closing the command palette or Help first: left open, the palette
        stayed on the previous screen's stack and the next ctrl+p crashed on its id."""
        while isinstance(self.screen, (CommandPalette, HelpScreen)):
            self.pop_screen()
        self.switch_mode(name)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def open_trace(self, run_id: str) -> None:
        self.push_screen(TraceScreen(run_id))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        for name, key, fkey, label in SCREENS:
            yield SystemCommand(
                f"Go to {label}",
                f"Show the {label} screen (key {key} or {fkey.upper()})",
                partial(self.action_go, name),
            )
        yield SystemCommand("Help", "Keys and what each screen does (F1)", self.action_help)
        if isinstance(screen, AppScreen):
            for title, help_text, callback in screen.commands():
                yield SystemCommand(title, help_text, callback)
        yield from super().get_system_commands(screen)
