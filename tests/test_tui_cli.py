"""`composite tui` on the command line: help, options, and a fast `composite --help`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from test_tui_support import SIZE, scripted_app, seeded_db, settle
from typer.testing import CliRunner

from composite_cli.cli.tui import tui
from composite_cli.tui.demo import fanout_script
from composite_cli.tui.screens.trace import TraceScreen


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
    assert "id, a unique prefix of one, or `latest`" in " ".join(result.output.replace("│", " ").split())


def test_an_unknown_screen_is_a_usage_error():
    result = CliRunner().invoke(_app(), ["tui", "--screen", "nope"])
    assert result.exit_code == 2
    assert "--screen must be one of" in result.output


@pytest.mark.parametrize("value", ["0", "-1", str(2**20 + 1)])
def test_a_token_limit_out_of_range_is_a_usage_error(value: str):
    result = CliRunner().invoke(_app(), ["tui", "--max-tokens", value])
    assert result.exit_code == 2
    assert "--max-tokens" in result.output


def test_importing_the_command_does_not_import_textual_or_litellm():
    code = "import sys, composite_cli.cli.tui; print('textual' in sys.modules, 'litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_trace_latest_opens_the_app_on_that_trace(isolated_home: Path, monkeypatch: pytest.MonkeyPatch):
    from composite_cli.tui.app import CompositeApp

    opened: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        CompositeApp, "run", lambda self: opened.append((self.start_screen, self.start_trace))
    )
    db = seeded_db(isolated_home)
    conn = sqlite3.connect(db)
    ids = [r[0] for r in conn.execute("select id from runs order by created_at desc, id desc")]
    conn.close()
    # `latest` and a unique prefix go through the one resolver before the app opens (issue 17 item 3)
    for ref, expected in (("latest", ids[0]), (ids[-1][:12], ids[-1]), (ids[1], ids[1])):
        result = CliRunner().invoke(_app(), ["tui", "--trace", ref, "--profile", "dry", "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert opened[-1] == ("traces", expected)


def test_an_unknown_or_ambiguous_trace_is_one_line_as_in_traces_show(isolated_home: Path):
    """It opened the app on an empty trace with a toast, and exited 0 when closed."""
    db = seeded_db(isolated_home)
    conn = sqlite3.connect(db)
    first, second = (r[0] for r in conn.execute("select id from runs order by id limit 2"))
    conn.close()
    shared = first[: next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)]
    for ref, expected in (("zzznope", "no run with id 'zzznope'"), (shared, "ambiguous run id prefix")):
        result = CliRunner().invoke(_app(), ["tui", "--trace", ref, "--profile", "dry", "--db", str(db)])
        assert result.exit_code == 1
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.output


async def test_trace_latest_resolves_to_the_newest_run(isolated_home: Path):
    """`--trace latest` goes through the shared resolver (traces/reader.py TraceReader.run_id)."""
    db = seeded_db(isolated_home)
    conn = sqlite3.connect(db)
    (newest,) = conn.execute("select id from runs order by created_at desc, id desc limit 1").fetchone()
    conn.close()
    app: Any = scripted_app(isolated_home, [fanout_script(2)], db=db, trace="latest")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, TraceScreen) and screen.run_id == newest
        assert f"trace {newest}" in str(screen.query_one("#trace-title").render())


def test_an_unknown_mode_is_an_error_listing_the_modes(isolated_home: Path):
    """Issue 17 item 3: `--mode nosuchmode` no longer opens on another mode (exit 1, as `chat`)."""
    result = CliRunner().invoke(_app(), ["tui", "--mode", "nosuchmode", "--profile", "dry"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown mode 'nosuchmode'" in lines[0] and "known modes:" in lines[0]
    assert "direct" in lines[0]


def test_an_invalid_mode_is_an_error_naming_its_problems(isolated_home: Path, monkeypatch):
    from test_tui_support import BROKEN

    modes = isolated_home / "bad-modes"
    modes.mkdir()
    (modes / "broken.yaml").write_text(BROKEN)
    (isolated_home / "composite.yaml").write_text(f"modes_path: [{modes}]\n")
    monkeypatch.chdir(isolated_home)
    result = CliRunner().invoke(_app(), ["tui", "--mode", "broken", "--profile", "dry"])
    assert result.exit_code == 2
    assert "propsals" in result.output and "Traceback" not in result.output


def test_an_unknown_theme_is_a_usage_error(isolated_home: Path):
    result = CliRunner().invoke(_app(), ["tui", "--theme", "neon", "--profile", "dry"])
    assert result.exit_code == 2
    assert "--theme must be one of" in result.output and "textual-light" in result.output


async def test_the_theme_is_taken_from_theme_and_remembered(isolated_home: Path):
    """Issue 17 item 8: `--theme` applies, and the theme picked is there at the next launch."""
    from composite_cli.config import read_tui_theme
    from composite_cli.tui.app import CompositeApp

    app = CompositeApp(scripted_app(isolated_home, []).services, theme="textual-light")
    async with app.run_test(size=SIZE) as pilot:
        assert pilot.app.theme == "textual-light"
        assert read_tui_theme() == "textual-light"  # --theme itself is remembered (it was not)
        pilot.app.theme = "nord"  # what the command palette's "Change theme" does
        await pilot.pause()
    assert read_tui_theme() == "nord"
    again: Any = scripted_app(isolated_home, [])
    async with again.run_test(size=SIZE) as pilot:
        assert pilot.app.theme == "nord"


async def test_a_garbled_theme_file_is_ignored(isolated_home: Path):
    from composite_cli.config import tui_theme_file

    tui_theme_file().parent.mkdir(parents=True, exist_ok=True)
    tui_theme_file().write_bytes(b"\xff\xfe not a theme")
    app: Any = scripted_app(isolated_home, [])
    async with app.run_test(size=SIZE) as pilot:
        assert pilot.app.theme == "textual-dark"
