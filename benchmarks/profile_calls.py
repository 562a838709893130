"""Where the CPU of one internal call and of one moa-v1 run goes, by component.

    python benchmarks/profile_calls.py [--calls 400] [--runs 100] [--rounds 5] [--json]
    PYTHONPATH=OLD_CHECKOUT python benchmarks/profile_calls.py   # the same on older code

Mock models (LiteLLM's `mock_response`, zero delay, a priced model name as in real use) so the
figures are composite's and LiteLLM's CPU, nothing else. Two workloads: (a) one internal call
through `calls.complete` (with the trace recorder subscribed, as in a run), next to the same
request sent straight to `litellm.acompletion`; (b) one `moa-v1` run (traced).

CPU per unit is `time.process_time()` (every thread: the event loop, LiteLLM's logging pool, the
trace writer) over N units, median of `--rounds` rounds. The split by component comes from a
sampling profiler in this script: a thread takes every thread's Python stack every 0.5 ms
(`sys._current_frames`) and files each busy sample under the highest-priority component found
anywhere on its stack (so LiteLLM's pricing called from its logging counts as pricing, and
`json.dumps` called by the trace recorder as JSON):

    pricing      litellm/cost_calculator.py, litellm/.../llm_cost_calc/, composite's calls._cost
    JSON         the json module, hashlib (serialising requests, records and cache keys)
    events       composite_cli/events.py (building and copying events)
    trace writes composite_cli/traces/ (recorder, store, writer thread, cache), sqlite
    LiteLLM logging/callbacks  litellm_logging.py (the per-call Logging object, its handlers),
                 litellm/integrations/, function_setup, the success-logging task, `logging`
    LiteLLM dispatch           every other frame of litellm/ (and openai, httpx, pydantic under it)
    composite engine           every other frame of composite_cli/ (calls, engine, redact, runner)
    other        asyncio's loop, the benchmark's own frames
Each look charges the CPU the thread used since the previous look (its own CPU clock,
`pthread_getcpuclockid`), so a thread waiting in C (epoll, sqlite's fsync) is not counted busy;
CPU found at a look where the thread already waits again is spread over that thread's components
in proportion.
Each component's ms per unit = its share of the charged CPU x the measured CPU per unit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from composite_cli.calls import CallRequest, complete
from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunContext, RunRequest
from composite_cli.events import RunStarted
from composite_cli.litellm_loader import get_litellm
from composite_cli.runner import Runner

USER = [{"role": "user", "content": "What is the capital of France?"}]
MODEL = {"model": "openai/gpt-4o-mini", "mock_response": "Paris.", "mock_delay": 0}

COMPONENTS = [
    "pricing",
    "JSON/serialization",
    "events",
    "trace writes",
    "LiteLLM logging/callbacks",
    "LiteLLM dispatch",
    "composite engine",
    "other",
]
_SEP = os.sep


def _component(filename: str, function: str) -> str | None:
    """The component a frame belongs to (None: no opinion; the next frame out decides)."""
    f = filename
    if f"{_SEP}litellm{_SEP}" in f:
        if "cost_calculator" in f or "llm_cost_calc" in f:
            return "pricing"
        if "litellm_logging" in f or f"{_SEP}integrations{_SEP}" in f:
            return "LiteLLM logging/callbacks"
        if function in (
            "function_setup",
            "dispatch_success_logging",
            "_client_async_logging_helper",
            "spawn_logging_task",
            "_schedule_async_success_logging",
        ):
            return "LiteLLM logging/callbacks"
        return "LiteLLM dispatch"
    if f"{_SEP}composite_cli{_SEP}" in f:
        if f.endswith(f"composite_cli{_SEP}calls.py") and function == "_cost":
            return "pricing"
        if f.endswith(f"composite_cli{_SEP}events.py"):
            return "events"
        if f"{_SEP}traces{_SEP}" in f:
            return "trace writes"
        return "composite engine"
    if f"{_SEP}json{_SEP}" in f or f.endswith("hashlib.py"):
        return "JSON/serialization"
    if f"{_SEP}sqlite_utils{_SEP}" in f or f"{_SEP}sqlite3{_SEP}" in f:
        return "trace writes"
    if f.endswith(f"logging{_SEP}__init__.py"):  # LiteLLM's verbose_logger
        return "LiteLLM logging/callbacks"
    return None


_PRIORITY = {name: i for i, name in enumerate(COMPONENTS)}
_IDLE = {("selectors.py", "select"), ("threading.py", "wait"), ("queue.py", "get"), ("thread.py", "_worker")}


def classify(frame: FrameType) -> str | None:
    """The component of one stack (None when the thread is waiting)."""
    code = frame.f_code
    if (os.path.basename(code.co_filename), code.co_name) in _IDLE:
        return None
    best = "other"
    current: FrameType | None = frame
    while current is not None:
        code = current.f_code
        found = _component(code.co_filename, code.co_name)
        if found is not None and _PRIORITY[found] < _PRIORITY[best]:
            best = found
        current = current.f_back
    return best


class Sampler:
    """Every `interval` seconds, charges the CPU each other thread used since the last look
    (its own CPU clock) to the component of the stack it is in now."""

    def __init__(self, interval: float = 0.0005):
        self.interval = interval
        self.counts: Counter[str] = Counter()  # CPU seconds per component
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._clocks: dict[int, tuple[int, float]] = {}
        self._per_thread: dict[int, Counter[str | None]] = {}

    def _cpu(self, ident: int) -> float | None:
        try:
            clock = self._clocks.get(ident, (time.pthread_getcpuclockid(ident), 0.0))[0]
            return time.clock_gettime(clock)
        except (OSError, AttributeError):
            return None

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.is_set():
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                now = self._cpu(ident)
                if now is None:
                    continue
                clock, before = self._clocks.get(ident, (time.pthread_getcpuclockid(ident), now))
                self._clocks[ident] = (clock, now)
                if now > before:
                    self._per_thread.setdefault(ident, Counter())[classify(frame)] += now - before
            time.sleep(self.interval)
        for counts in self._per_thread.values():
            # CPU charged at a look that found the thread waiting again: spread over its busy looks
            idle = counts.pop(None, 0.0)
            busy = sum(counts.values())
            for label, value in counts.items():
                self.counts[label] += value + idle * value / busy
            if not busy:
                self.counts["other"] += idle

    def __enter__(self) -> Sampler:
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0001)  # so the sampler gets the GIL often enough
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch)


def host(profile: Profile, subscribers: list[Any]) -> RunContext:
    return RunContext(
        run_id="profile",
        mode="profile",
        profile=profile,
        request=RunRequest(messages=USER),
        params={},
        max_calls=10**9,
        deadline_s=10**9,
        subscribers=subscribers,
    )


def cpu_per_unit(unit: Callable[[], Awaitable[Any]], n: int, flush: Callable[[], None]) -> float:
    """CPU ms per unit (all threads), the trace writer's queue drained inside the measure."""

    async def many() -> None:
        for _ in range(n):
            await unit()

    start = time.process_time()
    asyncio.run(many())
    flush()
    return (time.process_time() - start) * 1000 / n


def breakdown(unit: Callable[[], Awaitable[Any]], n: int, flush: Callable[[], None]) -> dict[str, float]:
    """Share of the charged CPU per component over n units."""

    async def many() -> None:
        for _ in range(n):
            await unit()

    with Sampler() as sampler:
        asyncio.run(many())
        flush()
    total = sum(sampler.counts.values()) or 1
    return {name: sampler.counts[name] / total for name in COMPONENTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="internal calls per round (default 400)")
    parser.add_argument("--runs", type=int, default=100, help="moa-v1 runs per round (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    litellm = get_litellm()
    profile = Profile("bench", {"*": dict(MODEL)})
    tmp = tempfile.mkdtemp()
    runner = Runner(Settings(profile=profile, db_path=Path(tmp) / "profile.db"))
    moa = runner.mode("moa-v1")
    context = host(profile, runner.open_subscribers())
    context.emit(  # the run row the internal calls' rows belong to
        RunStarted(
            run_id="profile", mode="profile", source="bench", profile="bench", input="", started_at=0.0
        )
    )
    bare_kwargs = {**profile.resolve("fast"), "messages": USER}

    async def one_call() -> None:
        await complete(context, CallRequest(alias="fast", messages=USER, name="bench", parent_id=None))

    async def one_bare() -> None:
        await litellm.acompletion(**bare_kwargs)

    async def one_moa() -> None:
        await runner.run(moa, RunRequest(messages=USER, source="bench"))

    units = {"call": (one_call, args.calls), "bare": (one_bare, args.calls), "moa": (one_moa, args.runs)}
    for unit, n in units.values():  # warm up imports and LiteLLM's caches
        cpu_per_unit(unit, max(5, n // 10), runner.flush)
    cpu: dict[str, list[float]] = {name: [] for name in units}
    for _ in range(args.rounds):  # interleaved, so machine noise hits each alike
        for name, (unit, n) in units.items():
            cpu[name].append(cpu_per_unit(unit, n, runner.flush))
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    shares = {name: breakdown(unit, n, runner.flush) for name, (unit, n) in units.items() if name != "bare"}
    runner.close()

    load = os.getloadavg()[0]
    result = {
        "cpu_ms_per_internal_call": medians["call"],
        "cpu_ms_per_bare_acompletion": medians["bare"],
        "cpu_ms_per_moa_run": medians["moa"],
        "load_1min": load,
        "internal_call_ms": {k: v * medians["call"] for k, v in shares["call"].items()},
        "moa_run_ms": {k: v * medians["moa"] for k, v in shares["moa"].items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"CPU per internal call (calls.complete, traced): {medians['call']:.3f} ms  (target <= 1.0)")
    print(f"CPU per bare litellm.acompletion, same request: {medians['bare']:.3f} ms")
    print(f"CPU per moa-v1 run (4 calls, traced):            {medians['moa']:.3f} ms")
    print(f"1-minute load average: {load:.2f}\n")
    print("| component | internal call, ms | % | moa-v1 run, ms | % |")
    print("|---|---|---|---|---|")
    for name in COMPONENTS:
        c, m = shares["call"][name], shares["moa"][name]
        print(f"| {name} | {c * medians['call']:.3f} | {c:.0%} | {m * medians['moa']:.3f} | {m:.0%} |")
    print(f"| total | {medians['call']:.3f} | 100% | {medians['moa']:.3f} | 100% |")


if __name__ == "__main__":
    main()
