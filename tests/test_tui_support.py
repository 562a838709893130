"""Helpers for the TUI tests (no tests here): app factories fed by a fake model or scripted
engine events, a fixed clock and fixed trace rows, and waiting helpers for pilots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import composite_cli.calls
from composite_cli.runner import Runner
from composite_cli.traces.store import TraceStore
from composite_cli.tui.app import CompositeApp
from composite_cli.tui.demo import T0, ScriptedRun, ScriptedRunner, demo_services, demo_settings
from composite_cli.tui.demo_data import seed_eval, seed_runs
from composite_cli.tui.services import FakeClock

SIZE = (100, 30)
FAN4 = """
name: fan4-v1
description: Four experts in parallel, then an aggregator.
steps:
  - id: proposals
    kind: fanout
    experts:
      - {name: analyst, model: fast}
      - {name: teacher, model: fast}
      - {name: skeptic, model: fast}
      - {name: historian, model: fast}
  - id: answer
    kind: synthesize
    from: proposals
    model: strong
"""
BROKEN = """name: broken
description: A mode with mistakes.
steps:
  - id: proposals
    kind: fanout
    experts:
      - {name: analyst, model: fast}
  - id: answer
    kind: synthesize
    from: propsals
    model: strong
    system: "Use {{ answr }}"
"""


def modes_dir(home: Path, **files: str) -> Path:
    """A user modes directory holding fan4-v1 (and any extra files given)."""
    directory = home / "my-modes"
    directory.mkdir(exist_ok=True)
    (directory / "fan4-v1.yaml").write_text(FAN4.lstrip())
    for name, text in files.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory


def seeded_db(home: Path, *, evals: bool = True) -> Path:
    db = home / "traces.db"
    store = TraceStore(db)
    seed_runs(store)
    if evals:
        seed_eval(store)
    store.close()
    return db


def scripted_app(
    home: Path, scripts: list[ScriptedRun], *, now: float = T0, db: Path | None = None, **options: Any
) -> CompositeApp:
    """An app whose runs replay scripted engine events on a fake clock."""
    clock = FakeClock(now)
    screen = options.pop("screen", "run")
    trace = options.pop("trace", None)
    settings = demo_settings(db or home / "traces.db", modes_path=[modes_dir(home)])
    runner = ScriptedRunner(settings, scripts, clock=clock)
    return CompositeApp(demo_services(runner, clock, **options), screen=screen, trace=trace)


def engine_app(
    home: Path, *, now: float = T0, extra_modes: dict[str, str] | None = None, **options: Any
) -> CompositeApp:
    """An app on the real engine (the test's fake model answers), with a fake clock."""
    clock = FakeClock(now)
    screen = options.pop("screen", "run")
    settings = demo_settings(home / "traces.db", modes_path=[modes_dir(home, **(extra_modes or {}))])
    return CompositeApp(demo_services(Runner(settings), clock, **options), screen=screen)


def gate_calls(monkeypatch: Any, fake: Any, names: list[str]) -> dict[str, asyncio.Event]:
    """Hold the named model calls until their gate is set (the fake model answers after)."""
    gates = {name: asyncio.Event() for name in names}

    async def gated(**kwargs: Any) -> Any:
        gate = gates.get(kwargs["metadata"]["composite_call"])
        if gate is not None:
            await gate.wait()
        return await fake(**kwargs)

    monkeypatch.setattr(composite_cli.calls, "litellm_acompletion", gated)
    return gates


async def wait_until(pilot: Any, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds (fails the test after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


async def settle(pilot: Any, *, skip: tuple[str, ...] = ("run",)) -> None:
    """Wait for the app's workers except the groups in `skip` (a gated run never ends)."""
    from textual.worker import WorkerCancelled, WorkerFailed

    workers = [w for w in pilot.app.workers if w.group not in skip and not w.is_finished]
    for worker in workers:
        try:
            await worker.wait()
        except (WorkerCancelled, WorkerFailed):
            pass
    for _ in range(3):  # let tables recompute their column widths and plots redraw
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def type_prompt(pilot: Any, text: str) -> None:
    area = pilot.app.screen.query_one("#prompt")
    area.text = text
    await pilot.pause()


def rendered(widget: Any, width: int = 200) -> str:
    """The plain text a widget shows (Rich renderables included)."""
    import io

    from rich.console import Console

    visual = widget.render()
    renderable = getattr(visual, "_renderable", visual)
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()
