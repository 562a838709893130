"""How soon composite reacts: the timing figures the tests no longer assert.

    python benchmarks/responsiveness.py            # everything (about half a minute)
    python benchmarks/responsiveness.py --repeats 5 --skip-sandbox --json

The tests check what happens (a key is handled while experts stream, a cap stops a run, the
sandbox interrupts a loop); this script measures how long it takes, each figure with a ratio
measured in the same run (against the idle case, or against the limit that was set), because a
time alone says as much about the machine's load as about composite. Figures, not pass/fail.

- tui: F1 → help screen while a 16-expert fan-out streams, ÷ the same key with nothing running;
  TextBatch messages per second during the fan-out (the bridge's limit is 20, plus one per step
  or call event).
- engine: three experts of 0.2 s each, wall ÷ 0.2 s; a 0.1 s `call_timeout` and a 0.2 s run
  `deadline` against a model that would take 600 s, time to return ÷ the limit.
- sandbox: an infinite loop under a 1 s timeout, one that ignores SIGINT (1 s + 0.5 s grace), a
  0.5 s CPU limit, a 1 s total timeout around a hanging llm_query: time ÷ limit; starting a REPL
  with a 2 MB context ÷ starting an empty one.
- stream: closing a streamed answer mid-way → the run recorded `cancelled`, seconds ÷ the 11.5 s
  the rest of the answer would have taken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import composite_cli.calls
from composite_cli.config import Profile, Settings
from composite_cli.engine.executor import run_mode
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.errors import RunLimitExceeded

USER = [{"role": "user", "content": "What is the capital of France?"}]
SIZE = (100, 30)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- a fake model at the calls seam (as the tests' fake_model, with per-call delays) -------------


class SlowModel:
    """Answers through LiteLLM's mock path after `delays[name]` seconds (default 0)."""

    def __init__(self, delays: dict[str, float]):
        self.delays = delays

    async def __call__(self, **kwargs: Any) -> Any:
        from composite_cli.litellm_loader import get_litellm

        name = kwargs["metadata"]["composite_call"]
        await asyncio.sleep(self.delays.get(name, 0.0))
        return await get_litellm().acompletion(
            model=kwargs["model"], messages=kwargs["messages"], mock_response=f"answer {name}"
        )


async def _timed_run(text: str, delays: dict[str, float]) -> float:
    original = composite_cli.calls.litellm_acompletion
    composite_cli.calls.litellm_acompletion = SlowModel(delays)  # type: ignore[assignment]
    try:
        profile = Profile("bench", {"*": {"model": "openai/bench"}})
        t0 = time.perf_counter()
        try:
            await run_mode(parse_mode(text), RunRequest(messages=USER), profile=profile)
        except RunLimitExceeded:
            assert "deadline" in text, "only the deadline run is expected to stop with an error"
        return time.perf_counter() - t0
    finally:
        composite_cli.calls.litellm_acompletion = original


FANOUT3 = """
name: t
steps:
  - id: props
    kind: fanout
    experts: [{name: a, model: fast}, {name: b, model: fast}, {name: c, model: fast}]
  - {id: final, kind: synthesize, from: props, model: strong}
"""
CALL_TIMEOUT = """
name: t
steps:
  - id: s
    kind: fanout
    call_timeout: 0.1
    experts: [{name: slow, model: f}, {name: quick, model: f}]
"""
DEADLINE = "name: t\nlimits: {deadline: 0.2}\nsteps:\n  - {id: slow, kind: call, model: f}\n"


def engine_figures(repeats: int) -> dict[str, Any]:
    async def go() -> dict[str, list[float]]:
        await _timed_run(FANOUT3, {})  # warm LiteLLM up
        out: dict[str, list[float]] = {"fanout": [], "call_timeout": [], "deadline": []}
        for _ in range(repeats):
            out["fanout"].append(await _timed_run(FANOUT3, {"a": 0.2, "b": 0.2, "c": 0.2}))
            out["call_timeout"].append(await _timed_run(CALL_TIMEOUT, {"slow": 600}))
            out["deadline"].append(await _timed_run(DEADLINE, {"slow": 600}))
        return out

    times = asyncio.run(go())
    return {
        "three 0.2 s experts, wall s": median(times["fanout"]),
        "three 0.2 s experts, wall ÷ 0.2 s (1 = fully parallel, 3 = one after another)": median(
            times["fanout"]
        )
        / 0.2,
        "call_timeout 0.1 s, s to return": median(times["call_timeout"]),
        "call_timeout 0.1 s, time ÷ limit": median(times["call_timeout"]) / 0.1,
        "deadline 0.2 s, s to return": median(times["deadline"]),
        "deadline 0.2 s, time ÷ limit": median(times["deadline"]) / 0.2,
    }


# -- the TUI ------------------------------------------------------------------------------------


async def _key_latency(home: Path, *, during_fanout: bool) -> tuple[float, float | None]:
    """Seconds from F1 to the help screen; and TextBatch messages per second of the fan-out."""
    from composite_cli.tui.app import CompositeApp
    from composite_cli.tui.demo import T0, ScriptedRunner, demo_services, demo_settings, fanout_script
    from composite_cli.tui.screens.help import HelpScreen
    from composite_cli.tui.services import FakeClock

    script = fanout_script(16)
    script.pace = 0.0005
    clock = FakeClock(T0)
    runner = ScriptedRunner(demo_settings(home / "traces.db"), [script], clock=clock)
    app = CompositeApp(demo_services(runner, clock, delta_interval=0.05), screen="run")

    async def until(pilot: Any, condition: Callable[[], bool]) -> None:
        while not condition():
            await pilot.pause(0.005)

    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        rate = None
        if during_fanout:
            screen.query_one("#prompt").text = "openings?"
            await pilot.pause()
            started = time.perf_counter()
            await pilot.press("ctrl+r")
            await until(pilot, lambda: len(screen.state.items) > 8)
        t0 = time.perf_counter()
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        latency = time.perf_counter() - t0
        await pilot.press("escape")
        if during_fanout:
            await until(pilot, lambda: not screen.running)
            rate = screen.bridge.batches / (time.perf_counter() - started)
        return latency, rate


def tui_figures(repeats: int) -> dict[str, Any]:
    idle, busy, rates = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            home = Path(tmp) / str(i)
            home.mkdir()
            idle.append(asyncio.run(_key_latency(home, during_fanout=False))[0])
            latency, rate = asyncio.run(_key_latency(home, during_fanout=True))
            busy.append(latency)
            rates.append(rate or 0.0)
    return {
        "F1 → help, idle, s": median(idle),
        "F1 → help during a 16-expert fan-out, s": median(busy),
        "F1 → help, fan-out ÷ idle": median(busy) / median(idle),
        "TextBatch messages per second during the fan-out": median(rates),
    }


# -- the sandbox --------------------------------------------------------------------------------


def sandbox_figures(repeats: int) -> dict[str, Any]:
    from composite_cli.sandbox import Sandbox, SandboxLimits

    fast = SandboxLimits(timeout_s=1.0, cpu_s=5.0, total_timeout_s=5.0, interrupt_grace_s=0.5)

    async def hang(prompts: list[str]) -> list[str]:
        await asyncio.sleep(60)
        return ["never"]

    async def one() -> dict[str, float]:
        out: dict[str, float] = {}
        async with Sandbox(limits=fast) as sb:
            await sb.start({})
            t0 = time.perf_counter()
            await sb.execute("while True: pass")
            out["loop"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            await sb.execute("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass")
            out["ignores SIGINT"] = time.perf_counter() - t0
        async with Sandbox(limits=SandboxLimits(timeout_s=10, cpu_s=0.5, interrupt_grace_s=0.5)) as sb:
            await sb.start({})
            t0 = time.perf_counter()
            await sb.execute("x = 0\nwhile True: x += 1")
            out["cpu"] = time.perf_counter() - t0
        limits = SandboxLimits(timeout_s=1, total_timeout_s=1, interrupt_grace_s=0.5)
        async with Sandbox(limits=limits, on_llm_query=hang) as sb:
            await sb.start({})
            t0 = time.perf_counter()
            await sb.execute("llm_query('hi')")
            out["total"] = time.perf_counter() - t0
        for key, variables in (("start empty", {}), ("start 2 MB", {"context": "abcdefghij" * 200_000})):
            async with Sandbox(limits=fast) as sb:
                t0 = time.perf_counter()
                await sb.start(variables)
                out[key] = time.perf_counter() - t0
        return out

    runs = [asyncio.run(one()) for _ in range(repeats)]

    def m(key: str) -> float:
        return median([r[key] for r in runs])

    return {
        "infinite loop, 1 s timeout: s to stop": m("loop"),
        "infinite loop: time ÷ timeout": m("loop") / 1.0,
        "loop ignoring SIGINT, 1 s + 0.5 s grace: s to kill": m("ignores SIGINT"),
        "loop ignoring SIGINT: time ÷ (timeout + grace)": m("ignores SIGINT") / 1.5,
        "CPU limit 0.5 s (CPU seconds, so wall grows with load): s to stop": m("cpu"),
        "CPU limit: wall time ÷ limit": m("cpu") / 0.5,
        "total timeout 1 s around a hanging llm_query: s to stop": m("total"),
        "total timeout: time ÷ limit": m("total") / 1.0,
        "REPL start with a 2 MB context, s": m("start 2 MB"),
        "REPL start, 2 MB context ÷ empty": m("start 2 MB") / m("start empty"),
    }


# -- an abandoned stream ------------------------------------------------------------------------


def stream_figures(repeats: int) -> dict[str, Any]:
    """Close a streamed `moa-v1` answer after 3 chunks; seconds until the run is `cancelled`."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import pytest
    from conftest import FakeModel  # the tests' fake model: chunked streams with a delay

    import composite_cli

    answer = "a long streamed answer " * 100
    rest_s = (len(answer) / 4) * 0.02
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            fake = FakeModel()
            fake.on("answer", answer, chunk_delay=0.02)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(composite_cli.calls, "litellm_acompletion", fake)
                settings = Settings(
                    profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=Path(tmp) / f"{i}.db"
                )
                handler = composite_cli.register(settings=settings)
                stream = handler.streaming(
                    model="moa-v1", messages=USER, optional_params={}, logging_obj=None, model_response=None
                )
                for _ in range(3):
                    next(stream)
                t0 = time.perf_counter()
                stream.close()
                while True:
                    handler.runner.flush()
                    rows = handler.runner.store.list_runs(1)
                    if rows and rows[0]["status"] != "running":
                        break
                    time.sleep(0.005)
                times.append(time.perf_counter() - t0)
    return {
        "closed stream → run cancelled, s": median(times),
        "closed stream: time ÷ the rest of the answer (11.5 s)": median(times) / rest_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is shown)")
    parser.add_argument("--skip-sandbox", action="store_true", help="no sandbox figures (Linux only)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    figures: dict[str, Any] = {"load average (1 min) at start": os.getloadavg()[0]}
    figures.update(engine_figures(args.repeats))
    figures.update(tui_figures(args.repeats))
    if not args.skip_sandbox:
        figures.update(sandbox_figures(args.repeats))
    figures.update(stream_figures(args.repeats))
    if args.json:
        print(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.3f}")


if __name__ == "__main__":
    main()
