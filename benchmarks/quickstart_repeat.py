"""The quick start, N times in a row: does it always answer?

    python benchmarks/quickstart_repeat.py                  # 20 runs of the README's quick start
    python benchmarks/quickstart_repeat.py -n 5 --repeat-penalty 1.0   # without the loop penalty
    python benchmarks/quickstart_repeat.py --loop-rate 5    # loops per call, penalty 1.0 vs 1.1

Each run is the README's command, `composite chat --mode moa-v1 "Name three classical chess
openings."`, as a subprocess on the `local` profile (the embedded model) with a fresh trace
database in a temporary directory. A run passes when it exits 0, prints a non-empty answer, and
prints no error text (stdout or stderr). Printed: pass count, exit codes, the runs' finish reasons,
how many model calls were cut for looping (`stopped: repetition` in the trace), and latency
p50/max. `--repeat-penalty X` runs the same command through a config file whose profile sets that
penalty for every alias, to compare against the default sampling. Each run is a fresh process
that loads the model itself (`COMPOSITE_NO_WORKER=1`, as on a first run), unless `--worker` lets it
use the warm worker.

`--loop-rate SEEDS` measures instead how often single calls loop: moa-v1's three proposer prompts
on three chess questions, SEEDS seeds each, at `--temperature` (default 0.2, where a small model
loops most), in this process, once with repeat_penalty 1.0 and once with the default; a call
counts as looping when the embedded model cut it (`stopped: repetition`). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT = "Name three classical chess openings."
COMPOSITE = str(Path(sys.executable).parent / "composite")
ERROR_MARKERS = ("Error:", "Traceback", "MidStreamFallbackError", "repeating the same chunk")


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def trace_facts(db: Path) -> dict[str, Any]:
    """The run's status and finish_reason, and how many of its calls were cut for looping."""
    if not db.exists():
        return {"status": None, "finish_reason": None, "loops": 0}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        last_run = "select status, finish_reason from runs order by created_at desc limit 1"
        run = con.execute(last_run).fetchone()
        loops = con.execute(
            "select count(*) from steps where kind = 'llm' and json_extract(response_json, '$.stopped') = ?",
            ("repetition",),
        ).fetchone()[0]
    finally:
        con.close()
    status, finish = run if run else (None, None)
    return {"status": status, "finish_reason": finish, "loops": int(loops)}


def run_once(work: Path, repeat_penalty: float | None, timeout: float, worker: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_")}
    env["COMPOSITE_DB"] = str(work / "traces.db")
    if not worker:
        env["COMPOSITE_NO_WORKER"] = "1"
    if repeat_penalty is not None:
        config = work / "composite.yaml"
        profile = {"*": {"model": "local/smollm2", "repeat_penalty": repeat_penalty}}
        config.write_text(json.dumps({"profile": "bench", "profiles": {"bench": profile}}), encoding="utf-8")
        env["COMPOSITE_CONFIG"] = str(config)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [COMPOSITE, "chat", "--mode", "moa-v1", PROMPT],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=timeout,
            check=False,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
    seconds = time.perf_counter() - start
    errors = [m for m in ERROR_MARKERS if m in out or m in err]
    passed = code == 0 and bool(out.strip()) and not errors
    return {
        "exit": code,
        "passed": passed,
        "seconds": seconds,
        "answer": out.strip(),
        "error_text": errors,
        "stderr_tail": err.strip().splitlines()[-1:] if err.strip() else [],
        **trace_facts(work / "traces.db"),
    }


LOOP_QUESTIONS = [PROMPT, "What is castling in chess?", "List the pieces of a chess set."]


def loop_rate(seeds: int, temperature: float) -> None:
    """Print, for repeat_penalty 1.0 and the default, how many single calls the model looped in."""
    import asyncio

    import yaml

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from composite_cli.litellm_loader import get_litellm
    from composite_cli.local.model_info import TEXT_SAMPLING

    litellm = get_litellm()
    mode = yaml.safe_load((Path(__file__).resolve().parent.parent / "modes" / "moa-v1.yaml").read_text())
    systems = [expert["system"] for expert in mode["steps"][0]["experts"]]
    jobs = [(system, q, seed) for system in systems for q in LOOP_QUESTIONS for seed in range(seeds)]

    async def measure(penalty: float) -> tuple[int, int, float]:
        slots = asyncio.Semaphore(os.cpu_count() or 1)  # one call per pool instance

        async def one(system: str, question: str, seed: int) -> tuple[bool, bool]:
            async with slots:
                response = await litellm.acompletion(
                    model="local/smollm2",
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
                    temperature=temperature,
                    repeat_penalty=penalty,
                    max_tokens=256,
                    seed=seed,
                )
            fields = response.choices[0].message.provider_specific_fields or {}
            looped = fields.get("stopped") == "repetition"
            return looped, response.choices[0].finish_reason == "length" and not looped

        start = time.perf_counter()
        results = await asyncio.gather(*(one(*job) for job in jobs))
        return sum(r[0] for r in results), sum(r[1] for r in results), time.perf_counter() - start

    for penalty in (1.0, TEXT_SAMPLING["repeat_penalty"]):
        loops, at_max, seconds = asyncio.run(measure(penalty))
        print(
            f"repeat_penalty {penalty}, temperature {temperature}: {loops}/{len(jobs)} calls cut for "
            f"looping, {at_max} more ran to max_tokens (256) ({seconds:.0f}s)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--runs", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument("--repeat-penalty", type=float, default=None, help="override the text repeat penalty")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per run (default 900)")
    parser.add_argument("--worker", action="store_true", help="let the runs use the warm worker")
    parser.add_argument("--json", action="store_true", help="print every run as JSON")
    parser.add_argument("--loop-rate", type=int, metavar="SEEDS", help="measure loops per call instead")
    parser.add_argument("--temperature", type=float, default=0.2, help="for --loop-rate (default 0.2)")
    args = parser.parse_args()
    if args.loop_rate:
        loop_rate(args.loop_rate, args.temperature)
        return 0

    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="quickstart-") as tmp:
            result = run_once(Path(tmp), args.repeat_penalty, args.timeout, args.worker)
        results.append(result)
        first = result["answer"].splitlines()[0][:70] if result["answer"] else "(no answer)"
        log(
            f"run {i + 1}/{args.runs}: exit {result['exit']} {'pass' if result['passed'] else 'FAIL'} "
            f"{result['seconds']:.0f}s finish={result['finish_reason']} loops={result['loops']} | {first}"
        )

    if args.json:
        print(json.dumps(results, indent=1))
    seconds = [r["seconds"] for r in results]
    passed = sum(r["passed"] for r in results)
    in_a_row = 0
    for r in results:
        if not r["passed"]:
            break
        in_a_row += 1
    exits = collections.Counter(str(r["exit"]) for r in results)
    finishes = collections.Counter(str(r["finish_reason"]) for r in results)
    penalty = "default" if args.repeat_penalty is None else f"repeat_penalty {args.repeat_penalty}"
    loops = sum(r["loops"] for r in results)
    looping_runs = sum(1 for r in results if r["loops"])
    print(f"quick start x{args.runs} ({penalty}): {passed}/{args.runs} passed, first {in_a_row} in a row")
    print(f"exit codes: {dict(exits)}")
    print(f"finish reasons: {dict(finishes)}")
    print(f"calls cut for looping: {loops} (in {looping_runs} runs)")
    print(f"latency: p50 {statistics.median(seconds):.1f}s, max {max(seconds):.1f}s")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
