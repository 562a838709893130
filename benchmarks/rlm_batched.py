"""rlm-v1: 8 sub-calls in one `llm_query_batched` vs 8 `llm_query` calls one after another.

    python benchmarks/rlm_batched.py [--delay 0.2] [--rounds 5] [--concurrency 4 8] [--json]

The root model is a mock whose one reply is a REPL block and FINAL_VAR: either
`answer = str(llm_query_batched([...8 prompts...]))` or the same 8 prompts through `llm_query` in
a loop. The sub model is a mock answering after `--delay` seconds. Each round runs both, one after
the other (interleaved, so machine load hits both alike); the figure is the median time from the
first sub-call's start to the last one's end (from the call records) and the ratio sequential /
batched (the whole run's wall time too: it adds the REPL's start and the root's turn to both),
per value of the mode's `concurrency` parameter (how many sub-calls of one batch run at once;
rlm-v1's default is 4, so 8 sub-calls take two waves).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.events import CallFinished, Event
from composite_cli.litellm_loader import get_litellm
from composite_cli.runner import Runner

N = 8
PROMPTS = f"[f'Question {{i}}: what is {{i}} + {{i}}?' for i in range({N})]"
BATCHED = f"```repl\nanswer = str(llm_query_batched({PROMPTS}))\n```\nFINAL_VAR(answer)"
SEQUENTIAL = f"```repl\nanswer = str([llm_query(p) for p in {PROMPTS}])\n```\nFINAL_VAR(answer)"
CONTEXT = "A short document. " * 20 + "\nQuestion: add the numbers."


def profile(root_reply: str, delay: float) -> Profile:
    mock = {"model": "openai/bench"}
    return Profile(
        "bench",
        {
            "root": {**mock, "mock_response": root_reply},
            "sub": {**mock, "mock_response": "the sum", "mock_delay": delay},
            "*": {**mock, "mock_response": "ok"},
        },
    )


async def one_run(runner: Runner, root_reply: str, delay: float, concurrency: int) -> tuple[float, float]:
    """(wall seconds of the run, seconds from the first sub-call's start to the last one's end)."""
    subs: list[Any] = []

    def collect(event: Event) -> None:
        if isinstance(event, CallFinished) and event.record.name.startswith("llm_query"):
            subs.append(event.record)

    start = time.perf_counter()
    result = await runner.run(
        "rlm-v1",
        RunRequest(
            messages=[{"role": "user", "content": CONTEXT}],
            params={"concurrency": concurrency, "fallback_after": -1},
        ),
        profile=profile(root_reply, delay),
        subscribers=[collect],
    )
    wall = time.perf_counter() - start
    if result.status != "ok" or result.calls != N + 1:
        raise SystemExit(f"unexpected run: status {result.status}, {result.calls} calls: {result.text[:200]}")
    span = max(r.started_at + (r.latency_ms or 0) / 1000 for r in subs) - min(r.started_at for r in subs)
    return wall, span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=float, default=0.2, help="sub-call delay in seconds (default 0.2)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    get_litellm()
    figures: dict[str, Any] = {"sub_calls": N, "delay_s": args.delay, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(Settings(profile=profile(BATCHED, args.delay), db_path=Path(tmp) / "t.db"))

        async def bench() -> None:
            await one_run(runner, BATCHED, 0.0, 4)  # warm up: imports, the sandbox's first start
            for concurrency in args.concurrency:
                batched, sequential = [], []
                for _ in range(args.rounds):
                    batched.append(await one_run(runner, BATCHED, args.delay, concurrency))
                    sequential.append(await one_run(runner, SEQUENTIAL, args.delay, concurrency))
                b, s = (statistics.median(span for _, span in runs) for runs in (batched, sequential))
                bw, sw = (statistics.median(wall for wall, _ in runs) for runs in (batched, sequential))
                figures[f"concurrency_{concurrency}"] = {
                    "batched_s": round(b, 3),
                    "sequential_s": round(s, 3),
                    "speedup": round(s / b, 2),
                    "run_wall_batched_s": round(bw, 3),
                    "run_wall_sequential_s": round(sw, 3),
                    "run_wall_speedup": round(sw / bw, 2),
                    "ideal_speedup": round(N / -(-N // concurrency), 2),
                }

        asyncio.run(bench())
        runner.close()
    figures["load_1min"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"{N} sub-calls at {args.delay:g} s each, median of {args.rounds} rounds, load {figures['load_1min']}"
    )
    for concurrency in args.concurrency:
        f = figures[f"concurrency_{concurrency}"]
        print(
            f"concurrency {concurrency}: llm_query_batched {f['batched_s']:.3f} s, sequential llm_query "
            f"{f['sequential_s']:.3f} s, speed-up {f['speedup']:.2f}x "
            f"(ideal {f['ideal_speedup']:g}x, target >= 3x); whole run {f['run_wall_batched_s']:.3f} vs "
            f"{f['run_wall_sequential_s']:.3f} s, {f['run_wall_speedup']:.2f}x"
        )


if __name__ == "__main__":
    main()
