"""The Modes screen: every mode, its step tree and its YAML (highlighted); v validates it against
the active profile, with each error shown under its line. Both panes wrap long lines to their width
(an expert list, a long prompt), and wrap again when the terminal is resized."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from rich.tree import Tree
from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from composite_cli.engine.spec import ModeSpec, load_mode_file
from composite_cli.engine.steps.base import Step
from composite_cli.errors import ModeError, ModeValidationError
from composite_cli.tui import units
from composite_cli.tui.screens.base import STYLES, AppScreen, Command
from composite_cli.tui.widgets.navbar import NavBar
from composite_cli.tui.widgets.yaml_view import YamlView


class ModesScreen(AppScreen):
    CSS_PATH = STYLES / "modes.tcss"
    BINDINGS = [
        Binding("v", "validate", "Validate"),
        Binding("r", "reload", "Reload files"),
        Binding("enter", "use", "Use on Run screen"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.errors: list[ModeError] = []

    def compose(self) -> Any:
        yield NavBar("modes")
        with Horizontal(id="modes-body"):
            yield OptionList(id="mode-list")
            with Vertical(id="mode-main"):
                yield Static("", id="mode-about")
                with Horizontal(id="mode-panes"):
                    with VerticalScroll(id="mode-tree"):
                        yield Static("", id="mode-steps")
                    with VerticalScroll(id="yaml-box"):
                        yield YamlView("", id="mode-yaml")
                yield Static("", id="mode-problems")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#mode-list").border_title = "modes"
        self.query_one("#mode-tree").border_title = "steps"
        self.query_one("#yaml-box").border_title = "yaml"
        self.fill_list()
        self.query_one("#mode-list", OptionList).focus()

    def commands(self) -> list[Command]:
        return [
            (
                "Validate the mode",
                "Check the selected mode file against the active profile",
                self.action_validate,
            ),
            ("Reload mode files", "Read the mode directories again", self.action_reload),
        ]

    def on_resize(self) -> None:
        self.call_after_refresh(self.query_one(YamlView).rewrap)

    def fill_list(self) -> None:
        library = self.services.runner.library
        option_list = self.query_one("#mode-list", OptionList)
        option_list.clear_options()
        for name in library.names():
            option_list.add_option(Option(Text(name), id=name))
        if library.names():
            option_list.highlighted = 0

    def action_reload(self) -> None:
        self.fill_list()

    def action_use(self) -> None:
        if self.current is None:
            return
        from textual.widgets import Select

        self.app.switch_mode("run")
        self.app.screen.query_one("#mode", Select).value = self.current

    @on(OptionList.OptionHighlighted, "#mode-list")
    def mode_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.show_mode(event.option.id)

    def show_mode(self, name: str, *, validate: bool = False) -> None:
        self.current = name
        path = self.services.runner.library.files()[name]
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            source = f"# cannot read {path}: {exc}"
        spec: ModeSpec | None = None
        errors: list[ModeError] = []
        try:
            spec = load_mode_file(path, allow_code=self.services.settings.allow_code)
            if validate:
                errors = spec.check_aliases(self.services.settings.profile)
        except ModeValidationError as exc:
            errors = exc.errors
        self.errors = errors
        about = Text()
        about.append(name, style="bold")
        shorts = [short for short, full in self.services.runner.library.short_names().items() if full == name]
        if shorts:
            about.append(f" ({shorts[0]})", style="dim")
        if spec is not None:
            about.append(f"  {spec.description}")
            if spec.params:
                about.append(
                    "\nparams: " + ", ".join(f"{k}={v}" for k, v in spec.params.items()), style="dim"
                )
            about.append(
                f"\nlimits: max_calls={spec.limits.max_calls} deadline={spec.limits.deadline}s", style="dim"
            )
        about.append(f"\n{units.short_path(path)}", style="dim")
        self.query_one("#mode-about", Static).update(about)
        self._fill_tree(spec, errors)
        self.query_one(YamlView).show(source, errors)
        problems = self.query_one("#mode-problems", Static)
        error_style = self.app.theme_variables.get("error", "")
        if errors:
            lines = Text(
                f"{len(errors)} problem{'s' if len(errors) > 1 else ''}:\n", style=f"bold {error_style}"
            )
            for err in errors:
                lines.append(units.without_paths(err.one_line(), path) + "\n", style=error_style)
            lines.rstrip()
            problems.update(lines)
        elif validate:
            problems.update(
                Text(
                    f"✓ {name} is valid for profile {self.services.settings.profile.name}",
                    style=self.app.theme_variables.get("success", ""),
                )
            )
        else:
            problems.update("")
        problems.display = bool(errors) or validate

    def _fill_tree(self, spec: ModeSpec | None, errors: list[ModeError]) -> None:
        """The steps as a tree whose labels wrap (a Rich tree in a scrolling pane: a Textual Tree
        cuts each label at the pane's edge)."""
        steps = self.query_one("#mode-steps", Static)
        if spec is None:
            steps.update(
                Text(f"invalid: {len(errors)} problem(s)", style=self.app.theme_variables.get("error", ""))
            )
            return
        tree = Tree(Text(spec.name, style="bold"), guide_style="dim")
        self._add_steps(tree, spec.steps)
        steps.update(tree)

    def _add_steps(self, parent: Tree, steps: list[Step]) -> None:
        for step in steps:
            label = Text()
            label.append(f"{step.id} ", style="bold")
            label.append(step.kind, style=self.app.theme_variables.get("accent", ""))
            summary = step.summary()
            if summary:
                label.append("  ")
                label.append(summary, style="dim")
            node = parent.add(label)
            for child in step.children():
                self._add_steps(node, child)

    def action_validate(self) -> None:
        if self.current is None:
            return
        self.show_mode(self.current, validate=True)
        if self.errors:
            self.notify(f"{len(self.errors)} problem(s) in {self.current}", severity="error")
        else:
            self.notify(f"{self.current} is valid.")
