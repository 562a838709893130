"""Eval workers: a CPU-bound eval (mock models, no delay) in 1 process vs N worker processes.

    python benchmarks/eval_workers.py [--cases 600] [--workers 2] [--rounds 3] [--concurrency 16]
        [--delay 0] [--json]

Each round runs the same eval (`direct` and `moa-v1`, a fresh trace database each time, the call
cache off so every call is made) once with `--workers 1` and once with `--workers N`, in alternating
order, and reports the median wall times and their ratio measured in the same run. Before the
rounds, a 4-case eval with N workers starts the workers' fork server (it imports LiteLLM once, as
this process did before its clock started): that one-off is reported on its own (`first_start_s`),
and the rounds' N-worker times include forking the workers and opening their databases. The load
average is printed with the figures, since other processes on the machine take cores the workers
would use. With `--delay S` (each mock call waits S seconds) it also prints each wall time over
the ideal, every run's critical path ÷ concurrency, as benchmarks/eval_throughput.py does.
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

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from composite_cli.config import Profile, Settings
from composite_cli.evals.session import EvalSessions
from composite_cli.litellm_loader import get_litellm
from composite_cli.runner import Runner

MODES = ["direct", "moa-v1"]
CRITICAL_CALLS = {"direct": 1, "moa-v1": 2}  # critical path in calls: moa-v1 = proposers ‖ + aggregator


def write_cases(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            case = {
                "id": f"q{i}",
                "input": f"Capital of France? ({i})",
                "expected": "Paris",
                "scorer": "contains",
            }
            f.write(json.dumps(case) + "\n")


def one_eval(
    tmp: Path, cases: Path, workers: int, concurrency: int, tag: str, delay: float = 0.0
) -> tuple[float, int]:
    """Wall seconds of one eval (start to every row committed) and its result count."""
    model: dict[str, object] = {"model": "openai/gpt-4o-mini", "mock_response": "Paris"}
    if delay:
        model["mock_delay"] = delay
    profile = Profile("mock", {"*": model})
    db = tmp / f"{tag}.db"
    runner = Runner(Settings(profile=profile, db_path=db))
    try:
        session = EvalSessions(runner).start(
            cases, MODES, concurrency=concurrency, cache=False, workers=workers
        )
        start = time.perf_counter()
        asyncio.run(session.run())
        runner.flush()
        wall = time.perf_counter() - start
    finally:
        runner.close()
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("select count(*) from eval_results where error is null").fetchone()[0]
    return wall, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    get_litellm()  # this process's import is not the eval's
    walls: dict[int, list[float]] = {1: [], args.workers: []}
    loads = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cases = tmp / "cases.jsonl"
        write_cases(cases, args.cases)
        warm = tmp / "warm.jsonl"
        write_cases(warm, 4)
        first_start, _ = one_eval(tmp, warm, args.workers, args.concurrency, "warm", args.delay)
        for r in range(args.rounds):
            order = [1, args.workers] if r % 2 == 0 else [args.workers, 1]
            for workers in order:
                wall, rows = one_eval(tmp, cases, workers, args.concurrency, f"r{r}w{workers}", args.delay)
                assert rows == args.cases * len(MODES), f"{rows} results, expected {args.cases * len(MODES)}"
                walls[workers].append(wall)
                loads.append(os.getloadavg()[0])
    one, many = statistics.median(walls[1]), statistics.median(walls[args.workers])
    figures = {
        "cases": args.cases,
        "modes": len(MODES),
        "concurrency": args.concurrency,
        "cores": os.cpu_count(),
        "workers": args.workers,
        "rounds": args.rounds,
        "wall_1_worker_s": round(one, 2),
        f"wall_{args.workers}_workers_s": round(many, 2),
        "speedup": round(one / many, 2),
        "first_start_s": round(first_start, 2),
        "delay_s": args.delay,
        "walls": {str(k): [round(w, 2) for w in v] for k, v in walls.items()},
        "load_avg_1m": [round(x, 2) for x in loads],
    }
    if args.delay:
        ideal = sum(CRITICAL_CALLS[m] for m in MODES) * args.cases * args.delay / args.concurrency
        figures["ideal_s"] = round(ideal, 2)
        figures["wall_over_ideal_1_worker"] = round(one / ideal, 3)
        figures[f"wall_over_ideal_{args.workers}_workers"] = round(many / ideal, 3)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
