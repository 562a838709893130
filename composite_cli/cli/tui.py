"""`composite tui`: the Textual app. Textual is imported inside the command, so `composite --help`
stays fast."""

from __future__ import annotations

from typing import Annotated

import typer

from composite_cli.cli.errors import cli_errors
from composite_cli.cli.options import (
    AllowCodeOption,
    ConfigOption,
    DbOption,
    MaxTokensOption,
    ModelOption,
    ProfileOption,
    settings_from,
)

SCREEN_NAMES = ("run", "traces", "evals", "dashboard", "modes")


def tui(
    trace: Annotated[
        str | None,
        typer.Option(
            "--trace",
            help="Open straight to this run's trace: its id, a unique prefix of one, or `latest`.",
            show_default=False,
        ),
    ] = None,
    screen: Annotated[
        str, typer.Option("--screen", help=f"Screen to open on: {', '.join(SCREEN_NAMES)}.")
    ] = "run",
    mode: Annotated[str, typer.Option("--mode", "-m", help="Mode picked on the Run screen.")] = "direct",
    theme: Annotated[
        str | None,
        typer.Option(
            "--theme",
            help="Colour theme, e.g. textual-dark or textual-light (remembered for the next launch).",
            show_default=False,
        ),
    ] = None,
    max_tokens: MaxTokensOption = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    model: ModelOption = None,
    db: DbOption = None,
    allow_code: AllowCodeOption = None,
) -> None:
    """Open the TUI: run modes live, browse traces, compare evals, watch the dashboard.

    Examples:

      composite tui

      composite tui --mode moa --profile dry

      composite tui --trace 18eb3c   # open a run's timeline

      composite tui --trace latest   # the newest run's timeline

      composite tui --theme textual-light
    """
    from composite_cli.cli.errors import fail

    if screen not in SCREEN_NAMES:
        raise fail(f"--screen must be one of {', '.join(SCREEN_NAMES)}, got {screen!r}", 2)
    if theme is not None:
        from textual.theme import BUILTIN_THEMES

        if theme not in BUILTIN_THEMES:
            raise fail(f"--theme must be one of {', '.join(sorted(BUILTIN_THEMES))}, got {theme!r}", 2)
    with cli_errors():
        from composite_cli.runner import Runner
        from composite_cli.tui.app import CompositeApp
        from composite_cli.tui.services import TuiServices

        settings = settings_from(config, profile, model, db, allow_code=allow_code)
        runner = Runner(settings)
        try:
            # an unknown --mode is an error listing the modes (exit 1, as in `chat`), not the first
            # mode picked
            mode = runner.library.resolve(mode)
            runner.library.load(mode)  # an invalid one: its problems, one per line (exit 2)
            if trace is not None:  # the one run-id resolver (id, unique prefix, `latest`), as `traces show`
                from composite_cli.traces.reader import TraceReader

                trace = TraceReader(settings.db_path).run_id(trace)
            services = TuiServices(
                runner,
                mode=mode,
                profile=settings.profile.name,
                generation={"max_tokens": max_tokens} if max_tokens is not None else {},
            )
            CompositeApp(services, screen="traces" if trace else screen, trace=trace, theme=theme).run()
        finally:
            runner.close()


if __name__ == "__main__":  # `python -m composite_cli.cli.tui` (before `tui` is registered in main)
    typer.run(tui)
