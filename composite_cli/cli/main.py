"""The root `composite` command. Sub-commands import what they need lazily, so `--help` is fast
and never imports LiteLLM."""

from __future__ import annotations

from typing import Annotated

import typer

from composite_cli import __version__
from composite_cli.cli import chat, eval, models, modes, serve, traces, tui

app = typer.Typer(
    name="composite",
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
) -> None:
    """composite: composite LLM modes from the terminal."""


app.command("chat")(chat.chat)
app.command("models")(models.models)
app.command("tui")(tui.tui)
app.command("serve")(serve.serve)
app.add_typer(modes.app, name="modes")
app.add_typer(eval.app, name="eval")
app.add_typer(traces.app, name="traces")


def run() -> None:
    """Console-script entry point."""
    app()
