"""Overhead benchmarks for the engine, the trace store, the CLI start-up and the embedded model.

    python benchmarks/overhead.py            # everything (about a minute)
    python benchmarks/overhead.py --runs 100 --skip-local --json
    python benchmarks/overhead.py --vs-bare-only   # moa-v1 vs the same 4 bare LiteLLM calls

Mock models (LiteLLM's mock_response with a fixed mock_delay) stand in for providers, so the
figures measure composite itself. They are figures, not pass/fail tests: this machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.engine.spec import parse_mode
from composite_cli.events import CallFinished, Event
from composite_cli.runner import Runner

DELAY = 0.05
USER = [{"role": "user", "content": "What is the capital of France?"}]
FANOUT8 = """
name: fanout8
steps:
  - id: experts
    kind: fanout
    model: fast
    n: 8
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mock_profile(delay: float) -> Profile:
    return Profile("bench", {"*": {"model": "openai/bench", "mock_response": "Paris.", "mock_delay": delay}})


async def timed_runs(runner: Runner, mode: Any, runs: int) -> list[tuple[float, list[Any]]]:
    """(wall seconds, call records) per run."""
    out = []
    for _ in range(runs):
        records: list[Any] = []

        def collect(event: Event, records: list[Any] = records) -> None:
            if isinstance(event, CallFinished):
                records.append(event.record)

        start = time.perf_counter()
        await runner.run(mode, RunRequest(messages=USER, source="bench"), subscribers=[collect])
        out.append((time.perf_counter() - start, records))
    return out


def moa_critical_path(records: list[Any]) -> float:
    """Slowest proposer plus the aggregator (seconds)."""
    proposers = [r.latency_ms for r in records if r.name != "answer"]
    aggregator = sum(r.latency_ms for r in records if r.name == "answer")
    return (max(proposers) + aggregator) / 1000


async def bench_engine(runs: int, db: Path) -> dict[str, Any]:
    profile = mock_profile(DELAY)
    traced = Runner(Settings(profile=profile, db_path=db))
    untraced = Runner(Settings(profile=profile, db_path=db), trace=False)
    moa = traced.mode("moa-v1")
    await timed_runs(traced, moa, 3)  # warm up imports and LiteLLM's caches
    await timed_runs(untraced, moa, 3)

    on, off = [], []
    for _ in range(runs):  # interleave so machine noise hits both alike
        on.extend(await timed_runs(traced, moa, 1))
        off.extend(await timed_runs(untraced, moa, 1))
    traced.flush()
    overhead_ms = [(wall - moa_critical_path(recs)) * 1000 for wall, recs in on]
    overhead_off_ms = [(wall - moa_critical_path(recs)) * 1000 for wall, recs in off]

    fan = parse_mode(FANOUT8)
    fan_runs = await timed_runs(untraced, fan, max(10, runs // 5))
    efficiency = [max(r.latency_ms for r in recs) / 1000 / wall for wall, recs in fan_runs]
    traced.close()
    mean_on = statistics.mean(w for w, _ in on)
    mean_off = statistics.mean(w for w, _ in off)
    return {
        "moa_overhead_ms_p50": statistics.median(overhead_ms),
        "moa_overhead_ms_p95": pct(overhead_ms, 0.95),
        "moa_overhead_untraced_ms_p50": statistics.median(overhead_off_ms),
        "fanout8_parallel_efficiency_p50": statistics.median(efficiency),
        "fanout8_parallel_efficiency_min": min(efficiency),
        "trace_overhead_ratio": mean_on / mean_off,
        "moa_wall_ms_p50": statistics.median(w for w, _ in on) * 1000,
        "runs": runs,
    }


async def bench_vs_bare(runs: int, db: Path) -> dict[str, Any]:
    """moa-v1 (traced) vs the same four calls made straight with `litellm.acompletion` (a gather of
    three, then one) in the same process, zero delay: wall time per request, rounds interleaved."""
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    model = {"model": "openai/gpt-4o-mini", "mock_response": "Paris.", "mock_delay": 0}
    runner = Runner(Settings(profile=Profile("bench", {"*": model}), db_path=db))
    moa = runner.mode("moa-v1")

    async def bare() -> None:
        await asyncio.gather(*(litellm.acompletion(messages=USER, **model) for _ in range(3)))
        await litellm.acompletion(messages=USER, **model)

    async def composite() -> None:
        await runner.run(moa, RunRequest(messages=USER, source="bench"))

    for _ in range(20):  # warm up
        await bare()
        await composite()
    walls: dict[str, list[float]] = {"bare": [], "moa": []}
    for _ in range(runs):
        for name, fn in (("bare", bare), ("moa", composite)):
            start = time.perf_counter()
            await fn()
            walls[name].append(time.perf_counter() - start)
    runner.flush()
    runner.close()
    bare_ms = statistics.median(walls["bare"]) * 1000
    moa_ms = statistics.median(walls["moa"]) * 1000
    return {
        "bare_4_calls_wall_ms_p50": bare_ms,
        "moa_zero_delay_wall_ms_p50": moa_ms,
        "moa_vs_bare_ratio": moa_ms / bare_ms,
        "load_1min": os.getloadavg()[0],
    }


def bench_start(repeats: int = 10) -> dict[str, Any]:
    """Start-up time of `composite --help` and `composite modes list` (neither imports LiteLLM)."""
    exe = str(Path(sys.executable).with_name("composite"))
    figures = {}
    for label, args in (("help", ["--help"]), ("modes_list", ["modes", "list"])):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([exe, *args], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        figures[f"{label}_start_s_p50"] = statistics.median(times)
    return figures


def bench_local(tokens: int = 128) -> dict[str, Any]:
    """Tokens/s through LiteLLM's local/smollm2 vs raw llama-cpp-python, and a 2-expert fan-out."""
    from llama_cpp import Llama

    from composite_cli.litellm_loader import get_litellm
    from composite_cli.local import model_path, threads_per_instance

    litellm = get_litellm()
    prompt = [{"role": "user", "content": "Write a long story about a chess tournament in Paris."}]
    # Greedy decoding with ignore-eos-like length: same prompt, same length, both ways.
    options = {"max_tokens": tokens, "temperature": 0.0}

    raw = Llama(
        model_path=str(model_path()),
        n_ctx=2048,
        n_threads=threads_per_instance(),
        n_threads_batch=threads_per_instance(),
        verbose=False,
    )
    raw.create_chat_completion(messages=prompt, max_tokens=8)
    raw_rates, ours_rates = [], []
    for _ in range(3):
        start = time.perf_counter()
        out = raw.create_chat_completion(messages=prompt, **options)
        raw_rates.append(out["usage"]["completion_tokens"] / (time.perf_counter() - start))
        start = time.perf_counter()
        resp = litellm.completion(model="local/smollm2", messages=prompt, **options)
        ours_rates.append(resp.usage.completion_tokens / (time.perf_counter() - start))
    del raw

    local = Runner(
        Settings(
            profile=Profile("local", {"*": {"model": "local/smollm2"}}),
            db_path=Path(tempfile.mkdtemp()) / "t.db",
        ),
        trace=False,
    )
    one = parse_mode(
        "name: one\nsteps:\n  - {id: e, kind: fanout, model: fast, n: 1, max_tokens: 64, temperature: 0}\n"
    )
    two = parse_mode(
        "name: two\nsteps:\n  - {id: e, kind: fanout, model: fast, n: 2, max_tokens: 64, temperature: 0}\n"
    )

    async def wall(mode: Any) -> float:
        start = time.perf_counter()
        await local.run(mode, RunRequest(messages=prompt))
        return time.perf_counter() - start

    asyncio.run(wall(two))  # load both pool instances
    ones = [asyncio.run(wall(one)) for _ in range(3)]
    twos = [asyncio.run(wall(two)) for _ in range(3)]
    return {
        "local_tokens_per_s": statistics.median(ours_rates),
        "raw_llama_tokens_per_s": statistics.median(raw_rates),
        "local_vs_raw_ratio": statistics.median(ours_rates) / statistics.median(raw_rates),
        "fanout2_over_one_expert": statistics.median(twos) / statistics.median(ones),
    }


TARGETS = {
    "moa_overhead_ms_p50": ("<=", 5.0),
    "fanout8_parallel_efficiency_p50": (">=", 0.95),
    "trace_overhead_ratio": ("<=", 1.03),
    "moa_vs_bare_ratio": ("<=", 1.1),
    "help_start_s_p50": ("<=", 0.5),
    "modes_list_start_s_p50": ("<=", 0.5),
    "local_vs_raw_ratio": (">=", 0.95),
    "fanout2_over_one_expert": ("<=", 1.25),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="moa-v1 runs per setting (default 60; with --vs-bare-only, rounds of each, default 150)",
    )
    parser.add_argument("--skip-local", action="store_true", help="skip the embedded-model figures")
    parser.add_argument("--vs-bare-only", action="store_true", help="only moa-v1 vs bare LiteLLM calls")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    runs = args.runs if args.runs is not None else 60
    rounds = args.runs if args.runs is not None and args.vs_bare_only else max(runs, 150)
    with tempfile.TemporaryDirectory() as tmp:
        figures: dict[str, Any] = (
            {} if args.vs_bare_only else asyncio.run(bench_engine(runs, Path(tmp) / "bench.db"))
        )
        figures.update(asyncio.run(bench_vs_bare(rounds, Path(tmp) / "bare.db")))
    if not args.vs_bare_only:
        figures.update(bench_start())
    if not args.skip_local and not args.vs_bare_only:
        figures.update(bench_local())
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        target = TARGETS.get(key)
        verdict = ""
        if target:
            op, bound = target
            ok = value <= bound if op == "<=" else value >= bound
            verdict = f"  target {op} {bound:g}  {'OK' if ok else 'MISSED'}"
        print(f"{key:34} {value:10.3f}{verdict}")


if __name__ == "__main__":
    main()
