"""Start-up: commands that call no model import no heavy library, and flags show as flags.

Timings are in benchmarks/startup.py; these tests check what is imported (sys.modules in a fresh
interpreter), which is what makes the time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app

HEAVY = ("litellm", "sqlite_utils", "numpy", "llama_cpp", "openai", "textual")


def heavy_imports(code: str, cwd: Path, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The heavy top-level modules (and composite's model-calling modules) a fresh interpreter has
    imported after running `code`."""
    probe = (
        f"{code}\nimport sys\n"
        "names = {m.split('.')[0] for m in sys.modules} | {m for m in sys.modules if m.startswith('composite_cli')}\n"
        "print(' '.join(sorted(names)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        check=True,
    )
    loaded = set(out.stdout.strip().splitlines()[-1].split())
    return sorted(loaded & set(heavy))


def run_cli(args: list[str]) -> str:
    return (
        "import sys\n"
        "from composite_cli.cli.main import run\n"  # the console script's entry point
        f"sys.argv = ['composite', *{args!r}]\n"
        "try:\n"
        "    run()\n"
        "except SystemExit:\n"
        "    pass\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["modes", "list"],
        ["modes", "show", "moa"],
        ["models"],
        ["chat", "--help"],
        ["worker", "status"],
        ["traces", "--help"],
    ],
    ids=" ".join,
)
def test_commands_that_call_no_model_import_no_heavy_library(args: list[str], isolated_home: Path) -> None:
    assert heavy_imports(run_cli(args), isolated_home, HEAVY) == []


def test_help_does_not_load_the_worker_client(isolated_home: Path) -> None:
    """The entry point only flips a switch; the client (and the engine modules it needs) load when
    a command runs a mode."""
    loaded = heavy_imports(
        run_cli(["--help"]), isolated_home, ("composite_cli.worker.client", "composite_cli.calls")
    )
    assert loaded == []


def test_the_chat_client_side_imports_no_model_library(isolated_home: Path) -> None:
    """What `composite chat` loads before it hands the run to the worker (the trace store's
    sqlite-utils is there: the client reads the trace for --trace)."""
    code = "import composite_cli.cli.main, composite_cli.cli.chat, composite_cli.worker.client, composite_cli.runner"
    assert heavy_imports(code, isolated_home, ("litellm", "llama_cpp", "openai", "textual")) == []


def option_lines(help_text: str) -> dict[str, str]:
    rows = {}
    for line in help_text.splitlines():
        match = re.match(r"^│\s+(--[\w-]+)(.*)│$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize("args", [["chat", "--help"], ["traces", "list", "--help"], ["--help"]], ids=" ".join)
def test_flags_show_as_flags_in_help(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    rows = option_lines(result.output)
    assert "--help" in rows
    if args[0] != "--help":
        assert rows["--json"].split()[0] == "Print"  # no placeholder between the flag and its help


def test_options_with_values_keep_their_placeholder() -> None:
    result = CliRunner().invoke(app, ["chat", "--help"], env={"COLUMNS": "120"})
    rows = option_lines(result.output)
    assert rows["--mode"].split()[:2] == ["-m", "<str>"]
    assert rows["--max-tokens"].split()[:3] == ["<int", "range>", "[1<=x<=1048576]"]  # the range shows
