"""The root `composite` command. Sub-commands import what they need lazily, so `--help` and
`modes list` are fast and never import LiteLLM, sqlite-utils or numpy (tests/test_startup.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from composite_cli import __version__
from composite_cli.cli import chat, evals, models, modes, serve, traces, tui, worker
from composite_cli.cli.options import show_flags_as_flags


class CompositeGroup(TyperGroup):
    """The root group: every flag in the command tree shows as a flag in `--help`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        show_flags_as_flags(self)


app = typer.Typer(
    name="composite",
    cls=CompositeGroup,
    help="Experiment with composite LLM modes (mixture-of-agents, self-refinement, think tools, "
    "recursive LMs) that look like one chat model. Runs offline on an embedded model by default.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold API keys
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"composite {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker",
            help="Run in this process, without the warm background worker "
            "(also: COMPOSITE_NO_WORKER=1). See `composite worker --help`.",
        ),
    ] = False,
) -> None:
    """composite: composite LLM modes from the terminal."""
    if no_worker:
        from composite_cli.worker.switch import disable

        disable()


app.command("chat")(chat.chat)
app.command("models")(models.models)
app.command("tui")(tui.tui)
app.command("serve")(serve.serve)
app.add_typer(modes.app, name="modes")
app.add_typer(evals.app, name="eval")
app.add_typer(traces.app, name="traces")
app.add_typer(worker.app, name="worker")


def run() -> None:
    """Console-script entry point: the one way in that may use the background worker."""
    from composite_cli.worker.switch import allow

    allow()
    app()
