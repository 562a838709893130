"""Start-up cost and layers of the RLM sandbox: start a REPL, run one line, close it.

    python benchmarks/sandbox_start.py            # 10 runs
    python benchmarks/sandbox_start.py --runs 30 --json
    python benchmarks/sandbox_start.py --compare-cgroup   # with and without the REPL's cgroup

Prints the median and 90th percentile of start (stage 1's kernel layers + stage 2's REPL),
of one trivial execution, and of close (which removes the REPL's cgroup), plus the layers that
took effect on this machine, the cgroup layer first. `--compare-cgroup` also runs as many
sandboxes, interleaved, with cgroup creation switched off in this process (as on a machine without
a usable cgroup) and prints both. Figures, not pass/fail tests: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from composite_cli.sandbox import Sandbox, SandboxLimits, cgroup


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


def _report(results: list[tuple[float, float, float, dict[str, str]]]) -> dict[str, object]:
    return {
        "runs": len(results),
        "start": _summary([r[0] for r in results]),
        "execute": _summary([r[1] for r in results]),
        "close": _summary([r[2] for r in results]),
        "layers": results[-1][3],
    }


async def measure(runs: int, compare: bool) -> dict[str, dict[str, object]]:
    """Runs as configured and, with `compare`, interleaved runs without the cgroup (same load)."""
    configured, without = [], []
    for _ in range(runs):
        configured.append(await one_run())
        if compare:
            create = cgroup.create
            cgroup.create = _no_cgroup
            try:
                without.append(await one_run())
            finally:
                cgroup.create = create
    reports = {"as configured": _report(configured)}
    if compare:
        reports["without cgroup"] = _report(without)
    return reports


def cgroup_cost(runs: int) -> dict[str, float] | str:
    """Making a REPL's cgroup (mkdir, limits) and removing it, alone: the layer's own cost."""
    try:
        cgroup.site_of_this_process()
    except cgroup.CgroupUnavailable as exc:
        return f"unavailable ({exc})"
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        made = cgroup.create(SandboxLimits().memory_mb, SandboxLimits().max_pids)
        made.remove()
        times.append(time.perf_counter() - t0)
    return _summary(times)


def _no_cgroup(memory_mb: int, pids_max: int) -> cgroup.ReplCgroup:
    raise cgroup.CgroupUnavailable("switched off by --compare-cgroup")


def _print(title: str, report: dict[str, object]) -> None:
    layers = report["layers"]
    assert isinstance(layers, dict)
    print(f"{title} (cgroup: {layers.get('cgroup', 'not reported')})")
    for key in ("start", "execute", "close"):
        figures = report[key]
        assert isinstance(figures, dict)
        print(f"  {key:8} median {figures['median_ms']:7.1f} ms   p90 {figures['p90_ms']:7.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compare-cgroup", action="store_true", help="also run without the REPL's cgroup")
    args = parser.parse_args()
    reports: dict[str, object] = dict(await measure(args.runs, args.compare_cgroup))
    if args.compare_cgroup:
        reports["cgroup create+remove"] = cgroup_cost(max(args.runs, 50))
    if args.json:
        print(json.dumps(reports if args.compare_cgroup else reports["as configured"], indent=2))
        return
    for title, report in reports.items():
        if title == "cgroup create+remove":
            figures = report if isinstance(report, dict) else {}
            text = f"median {figures['median_ms']} ms, p90 {figures['p90_ms']} ms" if figures else str(report)
            print(f"{title}: {text}")
        else:
            assert isinstance(report, dict)
            _print(title, report)
    configured = reports["as configured"]
    assert isinstance(configured, dict)
    layers = configured["layers"]
    assert isinstance(layers, dict)
    print("layers:")
    for name, state in layers.items():
        print(f"  {name}: {state}")


if __name__ == "__main__":
    asyncio.run(main())
