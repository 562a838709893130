"""Eval throughput: 1,000 cases × 2 modes at concurrency 64 on mock models with a fixed delay.

    python benchmarks/eval_throughput.py [--cases 1000] [--delay 0.2] [--concurrency 64] [--json]

Reports wall time against the ideal (the sum of every run's critical path ÷ concurrency) and the
process's CPU time (every thread) per model call, which is the floor: one core can serve at most
1 / (CPU per call) calls a second. Then runs the same eval again to measure the call cache: hit
rate and speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from composite_cli.config import Profile, Settings
from composite_cli.evals.dataset import load_eval_file
from composite_cli.evals.runner import EvalRunner, EvalSettings
from composite_cli.litellm_loader import get_litellm
from composite_cli.runner import Runner

# critical path per run, in units of the call delay: direct = 1 call; moa-v1 = proposers ‖ + aggregator
CRITICAL_CALLS = {"direct": 1, "moa-v1": 2}


def write_cases(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "input": f"What is the capital of France? (case {i})",
                        "expected": "Paris",
                        "scorer": "contains",
                    }
                )
                + "\n"
            )


async def one_eval(runner: Runner, eval_file, modes: list[str], concurrency: int) -> tuple[str, float, float]:
    """(eval id, wall seconds, CPU seconds of the whole process, every thread)."""
    evals = EvalRunner(runner, EvalSettings(modes=modes, concurrency=concurrency))
    eval_id = evals.start(eval_file, modes)
    start, cpu = time.perf_counter(), time.process_time()
    await evals.run(eval_file, eval_id)
    return eval_id, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = ["direct", "moa-v1"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases.jsonl"
        write_cases(cases, args.cases)
        # a priced model name, as in real use (LiteLLM works much harder on names it cannot price)
        profile = Profile(
            "mock", {"*": {"model": "openai/gpt-4o-mini", "mock_response": "Paris", "mock_delay": args.delay}}
        )
        runner = Runner(Settings(profile=profile, db_path=Path(tmp) / "traces.db"))
        eval_file = load_eval_file(cases)
        get_litellm()  # import it before the clock starts (a one-off of ~3 s per process)
        first_id, first_wall, first_cpu = asyncio.run(one_eval(runner, eval_file, modes, args.concurrency))
        ideal = (
            sum(CRITICAL_CALLS[m] for m in ["direct", "moa-v1"]) * args.cases * args.delay / args.concurrency
        )
        hits_before = runner.cache.hits if runner.cache else 0
        second_id, second_wall, _ = asyncio.run(one_eval(runner, eval_file, modes, args.concurrency))
        runner.flush()
        db = sqlite3.connect(Path(tmp) / "traces.db")
        calls, cached = db.execute(
            "select count(*), sum(coalesce(cached, 0)) from steps where kind = 'llm' and run_id in "
            "(select run_id from eval_results where eval_run_id = ?)",
            [second_id],
        ).fetchone()
        first_calls = db.execute(
            "select count(*) from steps where kind = 'llm' and run_id in "
            "(select run_id from eval_results where eval_run_id = ?)",
            [first_id],
        ).fetchone()[0]
        passed = db.execute(
            "select avg(passed) from eval_results where eval_run_id = ?", [first_id]
        ).fetchone()[0]
        runner.close()
    figures = {
        "cases": args.cases,
        "modes": len(modes),
        "concurrency": args.concurrency,
        "delay_s": args.delay,
        "wall_s": round(first_wall, 2),
        "ideal_s": round(ideal, 2),
        "wall_over_ideal": round(first_wall / ideal, 3),
        "cpu_s": round(first_cpu, 2),
        "model_calls": first_calls,
        "cpu_ms_per_model_call": round(first_cpu * 1000 / first_calls, 3) if first_calls else None,
        "load_1min": round(os.getloadavg()[0], 2),
        "accuracy_check": passed,
        "rerun_wall_s": round(second_wall, 2),
        "rerun_cache_hit_rate": round(cached / calls, 4) if calls else None,
        "rerun_speedup": round(first_wall / second_wall, 1),
        "cache_hits": (runner.cache.hits if runner.cache else 0) - hits_before,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
