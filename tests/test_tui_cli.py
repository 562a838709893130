"""`composite tui` on the command line: help, options, and a fast `composite --help`."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.testing import CliRunner

from composite_cli.cli.tui import tui


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("tui")(tui)
    app.command("noop")(lambda: None)  # a second command, so `tui` is a sub-command as in main
    return app


def test_tui_help_lists_its_options():
    result = CliRunner().invoke(_app(), ["tui", "--help"])
    assert result.exit_code == 0
    for option in ("--trace", "--screen", "--mode", "--max-tokens", "--profile", "--db"):
        assert option in result.output


def test_an_unknown_screen_is_a_usage_error():
    result = CliRunner().invoke(_app(), ["tui", "--screen", "nope"])
    assert result.exit_code == 2
    assert "--screen must be one of" in result.output


def test_importing_the_command_does_not_import_textual_or_litellm():
    code = "import sys, composite_cli.cli.tui; print('textual' in sys.modules, 'litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
