"""Regenerate the README screenshots of the TUI, from scripted runs (no model, no network):

    python -m composite_cli.tui.screenshots [DOCS_DIR]     # default: ./docs

writes `tui-run.svg` (the Run screen in the middle of a 16-expert fan-out), `tui-trace.svg`
(the timeline and step tree of a finished fan-out run, one expert selected), and, over the demo
runs and eval, `tui-traces.svg` (the Traces list), `tui-evals.svg` (an eval's comparison and
plots) and `tui-dashboard.svg`."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from composite_cli.traces.store import TraceStore
from composite_cli.tui.app import CompositeApp
from composite_cli.tui.demo import T0, ScriptedRunner, demo_services, demo_settings, fanout_script
from composite_cli.tui.demo_data import seed_eval, seed_runs, seed_script
from composite_cli.tui.services import FakeClock

SIZE = (100, 30)
PROMPT = "Name three classical chess openings."


async def run_screenshot(db: Path, out: Path) -> None:
    clock = FakeClock(T0)
    script = fanout_script(16, gate_at=1.3)
    app = CompositeApp(demo_services(ScriptedRunner(demo_settings(db), [script], clock=clock), clock))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.query_one("#prompt").text = PROMPT  # type: ignore[attr-defined]
        await pilot.press("ctrl+r")
        while "mid" not in script.reached:
            await pilot.pause(0.02)
        await pilot.pause(0.2)
        app.screen.refresh_live()  # type: ignore[attr-defined]
        await pilot.pause()
        app.save_screenshot(out.name, path=str(out.parent))
        script.release("mid")
        await app.workers.wait_for_complete()


async def trace_screenshot(db: Path, out: Path) -> None:
    script = fanout_script(6, run_id="demo-trace-0001", failing=4)
    seed_script(TraceStore(db), script)
    clock = FakeClock(T0 + 60)
    runner = ScriptedRunner(demo_settings(db), [script], clock=clock)
    app = CompositeApp(demo_services(runner, clock), screen="traces", trace="demo-trace-0001")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("down", "down", "down")
        await pilot.pause()
        app.save_screenshot(out.name, path=str(out.parent))


async def screen_screenshot(db: Path, out: Path, screen: str) -> None:
    """One screen over the demo runs and eval (the dry profile's scripted data)."""
    store = TraceStore(db)
    seed_runs(store)
    seed_eval(store)
    store.close()
    clock = FakeClock(T0 + 60)
    runner = ScriptedRunner(demo_settings(db), [], clock=clock)
    app = CompositeApp(demo_services(runner, clock), screen=screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.save_screenshot(out.name, path=str(out.parent))


def main(argv: list[str]) -> None:
    docs = Path(argv[0]) if argv else Path("docs")
    docs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_screenshot(Path(tmp) / "run.db", docs / "tui-run.svg"))
        asyncio.run(trace_screenshot(Path(tmp) / "trace.db", docs / "tui-trace.svg"))
        for screen in ("traces", "evals", "dashboard"):
            asyncio.run(screen_screenshot(Path(tmp) / f"{screen}.db", docs / f"tui-{screen}.svg", screen))
    print(f"wrote tui-run.svg, tui-trace.svg, tui-traces.svg, tui-evals.svg and tui-dashboard.svg in {docs}")


if __name__ == "__main__":
    main(sys.argv[1:])
