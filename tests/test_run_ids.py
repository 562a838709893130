"""Run ids on every front end: `composite traces show`, `traces export` and `composite tui --trace`
resolve an id, a unique prefix or `latest` through the one resolver (traces/reader.py TraceReader), so they
agree; a `%` or `_` in the input is a character, an ambiguous prefix is one line naming the
candidates, and a file that is not a trace database is one line, never a traceback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from test_tui_support import SIZE, settle
from typer.testing import CliRunner

from composite_cli.cli.traces import app as traces_app
from composite_cli.cli.tui import tui
from composite_cli.traces.recorder import TraceRecorder
from composite_cli.traces.store import TraceStore
from composite_cli.tui.demo_data import RunSpec, simple_run

# (id, seconds before the demo clock's T0): the last one is the newest
IDS = (("a_1", 500), ("ab2", 400), ("a%3", 300), ("A%4", 200), ("zz-newest", 10))


@pytest.fixture
def db(isolated_home: Path) -> Path:
    path = isolated_home / "traces.db"
    store = TraceStore(path).open()
    recorder = TraceRecorder(store)
    for run_id, ago in IDS:
        for event in simple_run(RunSpec(run_id, "direct", "chat", ago, 0.5)):
            recorder(event)
    store.close()
    return path


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(traces_app, name="traces")
    app.command("tui")(tui)
    return app


def _show(db: Path, ref: str) -> Any:
    return CliRunner().invoke(_cli(), ["traces", "show", ref, "--json", "--db", str(db)])


def _shown_id(db: Path, ref: str) -> str:
    result = _show(db, ref)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["run"]["id"])


def _tui_trace(db: Path, ref: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Run `composite tui --trace REF` headless; the trace screen's run id and title."""
    from composite_cli.tui.app import CompositeApp
    from composite_cli.tui.screens.trace import TraceScreen

    seen: list[tuple[str, str]] = []

    def run_headless(app: Any) -> None:
        app.services.warm_up = False
        app.services.blink = app.services.animations = False

        async def go() -> None:
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                screen = pilot.app.screen
                assert isinstance(screen, TraceScreen)
                text = f"{screen.query_one('#trace-title').render()} {screen.query_one('#trace-summary').render()}"
                seen.append((screen.run_id, text))

        asyncio.run(go())

    monkeypatch.setattr(CompositeApp, "run", run_headless)
    result = CliRunner().invoke(_cli(), ["tui", "--trace", ref, "--profile", "dry", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    return seen[0]


def test_tui_trace_latest_opens_the_newest_run_as_traces_show_does(db: Path, monkeypatch: pytest.MonkeyPatch):
    assert _shown_id(db, "latest") == "zz-newest"
    run_id, text = _tui_trace(db, "latest", monkeypatch)
    assert run_id == "zz-newest" and "trace zz-newest" in text


def test_a_unique_prefix_names_the_same_run_on_both_front_ends(db: Path, monkeypatch: pytest.MonkeyPatch):
    assert _shown_id(db, "zz") == "zz-newest"
    assert _tui_trace(db, "zz", monkeypatch)[0] == "zz-newest"


@pytest.mark.parametrize(("ref", "full"), [("a_", "a_1"), ("a%", "a%3"), ("A%", "A%4"), ("a_1", "a_1")])
def test_percent_and_underscore_match_only_themselves(db: Path, ref: str, full: str):
    """With LIKE unescaped, `a_` would match ab2 and a%3 too; with LIKE at all, `a%` would match A%4."""
    assert _shown_id(db, ref) == full


def test_an_ambiguous_prefix_is_one_line_listing_the_candidates(db: Path):
    result = _show(db, "a")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ambiguous run id prefix 'a'" in lines[0]
    assert all(run_id in lines[0] for run_id in ("a_1", "ab2", "a%3"))
    assert "A%4" not in lines[0]
    # `composite tui --trace a` says the same line, before the app opens (it opened on the message)
    tui = CliRunner().invoke(_cli(), ["tui", "--trace", "a", "--profile", "dry", "--db", str(db)])
    assert tui.exit_code == 1
    assert tui.output.strip().splitlines() == lines


def test_an_unknown_id_is_one_line(db: Path):
    result = _show(db, "A_")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: no run with id 'A_' in {db}"


def test_export_resolves_ids_the_same_way(db: Path):
    result = CliRunner().invoke(_cli(), ["traces", "export", "a_", "latest", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["a_1", "zz-newest"]


@pytest.mark.parametrize("content", ["not a database\n", None])
def test_a_file_that_is_not_a_trace_database_is_one_line(isolated_home: Path, content: str | None):
    path = isolated_home / "other.db"
    if content is None:  # a SQLite file without composite's tables
        import sqlite3

        sqlite3.connect(path).execute("create table x (a)").connection.close()
    else:
        path.write_text(content)
    result = _show(path, "latest")
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot read runs from {path}: "), lines


def test_an_unknown_tui_mode_is_an_error_not_another_mode(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
):
    from composite_cli.tui.app import CompositeApp

    opened: list[Any] = []
    monkeypatch.setattr(CompositeApp, "run", lambda self: opened.append(self))
    result = CliRunner().invoke(_cli(), ["tui", "--mode", "nosuchmode", "--profile", "dry"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: unknown mode 'nosuchmode'; known modes: ")
    assert opened == []
    result = CliRunner().invoke(_cli(), ["tui", "--mode", "moa", "--profile", "dry"])  # a short name
    assert result.exit_code == 0, result.output
    assert opened[0].services.mode == "moa-v1"
