"""Start-up cost and layers of the RLM sandbox: start a REPL, run one line, close it.

    python benchmarks/sandbox_start.py            # 10 runs
    python benchmarks/sandbox_start.py --runs 30 --json

Prints the median and 90th percentile of start (stage 1's kernel layers + stage 2's REPL),
of one trivial execution, and of close, plus the layers that took effect on this machine.
Figures, not pass/fail tests: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from composite_cli.sandbox import Sandbox, SandboxLimits


async def one_run() -> tuple[float, float, float, dict[str, str]]:
    t0 = time.perf_counter()
    sb = Sandbox(limits=SandboxLimits())
    await sb.start({"x": 1})
    t1 = time.perf_counter()
    result = await sb.execute("print(x + 1)")
    assert result.output == "2\n", result
    t2 = time.perf_counter()
    layers = dict(sb.isolation)
    await sb.close()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, layers


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"median_ms": round(statistics.median(ordered) * 1000, 1), "p90_ms": round(p90 * 1000, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [await one_run() for _ in range(args.runs)]
    report = {
        "runs": args.runs,
        "start": _summary([r[0] for r in runs]),
        "execute": _summary([r[1] for r in runs]),
        "close": _summary([r[2] for r in runs]),
        "layers": runs[-1][3],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key in ("start", "execute", "close"):
        print(f"{key:8} median {report[key]['median_ms']:7.1f} ms   p90 {report[key]['p90_ms']:7.1f} ms")
    for name, state in report["layers"].items():
        print(f"  {name}: {state}")


if __name__ == "__main__":
    asyncio.run(main())
