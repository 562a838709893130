"""Start-up benchmarks: wall time from launch to exit (or to the first answer byte) of the real
`composite` console script, in fresh processes.

    python benchmarks/startup.py                    # everything (a few minutes on 2 cores)
    python benchmarks/startup.py --runs 3 --skip-local
    python benchmarks/startup.py --source /path/to/older/checkout   # "before" figures
    python benchmarks/startup.py --before /path/to/older/checkout   # interleaved before/after

Rows: `composite --help`, `composite modes list`, `composite chat -m direct --profile dry "hi"`
(mock models: the time is composite's and LiteLLM's, no model) and the first token of `composite
chat` on the embedded model (`local`). Columns: in-process (`COMPOSITE_NO_WORKER=1`: every command
imports LiteLLM itself), worker cold (no worker running: the command starts one and waits for it,
i.e. the first command of a session) and worker warm (the worker is running; for `local` it has
answered once, so the model is loaded). Each figure is the median of `--runs` runs. The worker
runs in a private temporary directory (COMPOSITE_WORKER_DIR), never the user's own.

Figures, not pass/fail tests: a shared machine makes them noisy, so the ratio in-process ÷ warm,
measured in the same run, is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

DRY_CONFIG = 'profiles:\n  dry:\n    "*": {model: openai/gpt-4o-mini, mock_response: "Paris"}\n'
TARGETS = {"help": 0.2, "modes list": 0.2, "chat dry": 1.5, "first token local": 2.0}


def composite_exe() -> str:
    exe = Path(sys.executable).with_name("composite")
    return str(exe) if exe.exists() else "composite"


class Bench:
    def __init__(self, source: Path | None, work: Path):
        self.exe = composite_exe()
        self.source = source
        self.work = work
        self.env = {**os.environ, "COMPOSITE_WORKER_DIR": str(work / "worker")}
        self.env.pop("COMPOSITE_NO_WORKER", None)
        if source is not None:  # an older checkout: its composite_cli shadows the installed one
            paths = [str(source), os.environ.get("PYTHONPATH")]
            self.env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        (work / "composite.yaml").write_text(DRY_CONFIG, encoding="utf-8")
        probe = subprocess.run([self.exe, "worker", "--help"], capture_output=True, env=self.env, cwd=work)
        self.has_worker = probe.returncode == 0

    def _env(self, worker: bool) -> dict[str, str]:
        return self.env if worker else {**self.env, "COMPOSITE_NO_WORKER": "1"}

    def _launch(self, args: list[str], worker: bool) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.exe, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env(worker),
            cwd=self.work,
        )

    def _finish(self, proc: subprocess.Popen[bytes], args: list[str]) -> float:
        """Wait for the exit; the process's own CPU seconds (user + system)."""
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read()
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"composite {' '.join(args)} failed ({proc.returncode}): {err.decode().strip()}")
        return usage.ru_utime + usage.ru_stime

    def wall(self, args: list[str], worker: bool = False) -> Sample:
        """Seconds from launch to exit, and the command's own CPU seconds (not the worker's)."""
        start = time.perf_counter()
        proc = self._launch(args, worker)
        cpu = self._finish(proc, args)
        return Sample(time.perf_counter() - start, cpu)

    def first_byte(self, args: list[str], worker: bool = False) -> Sample:
        """Seconds from launch to the first byte of the answer on stdout (then waits for the exit)."""
        start = time.perf_counter()
        proc = self._launch(args, worker)
        assert proc.stdout is not None
        if not proc.stdout.read(1):
            raise SystemExit(f"composite {' '.join(args)} printed nothing")
        elapsed = time.perf_counter() - start
        self._finish(proc, args)
        return Sample(elapsed, None)

    def stop_worker(self) -> None:
        if self.has_worker:
            subprocess.run([self.exe, "worker", "stop"], capture_output=True, env=self.env, cwd=self.work)


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float | None  # the command's own CPU time (a quiet machine's wall time is close to it)


Measure = Callable[[list[str], bool], Sample]


def median_of(
    runs: int, measure: Measure, argv: list[str], worker: bool, before: Callable[[], None] | None
) -> Sample:
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        samples.append(measure(argv, worker))
    cpus = [s.cpu for s in samples if s.cpu is not None]
    return Sample(statistics.median(s.wall for s in samples), statistics.median(cpus) if cpus else None)


def row_for(bench: Bench, runs: int, argv: list[str], measure: Measure) -> dict[str, Sample | None]:
    """In-process, worker cold (stopped before each run) and worker warm (started beforehand)."""
    row: dict[str, Sample | None] = {"in-process": median_of(runs, measure, argv, False, None)}
    row["worker cold"] = row["worker warm"] = None
    if bench.has_worker:
        row["worker cold"] = median_of(runs, measure, argv, True, bench.stop_worker)
        measure(argv, True)  # start it (and load the model) before the warm runs
        row["worker warm"] = median_of(runs, measure, argv, True, None)
        bench.stop_worker()
    return row


def cell(sample: Sample | None) -> str:
    if sample is None:
        return "-"
    return f"{sample.wall:.2f} s" + (f" ({sample.cpu:.2f})" if sample.cpu is not None else "")


def compare(
    before: Bench, after: Bench, runs: int, cases: dict[str, list[str]]
) -> dict[str, dict[str, Sample]]:
    """In-process figures of two checkouts, their runs interleaved (so both see the same load)."""
    out = {}
    for name, argv in cases.items():
        samples: dict[str, list[Sample]] = {"before": [], "after": []}
        for _ in range(runs):
            samples["before"].append(before.wall(argv))
            samples["after"].append(after.wall(argv))
        out[name] = {
            k: Sample(statistics.median(x.wall for x in v), statistics.median(x.cpu or 0.0 for x in v))
            for k, v in samples.items()
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median; default 5)")
    parser.add_argument("--skip-local", action="store_true", help="skip the embedded-model row")
    parser.add_argument("--source", type=Path, help="measure another checkout (its directory)")
    parser.add_argument("--before", type=Path, help="also compare with another checkout, interleaved")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    os.chmod(work, 0o700)
    bench = Bench(args.source.resolve() if args.source else None, work)
    load = os.getloadavg()[0]
    rows: dict[str, dict[str, Sample | None]] = {}
    compared: dict[str, dict[str, Sample]] = {}
    dry = ["chat", "-q", "-m", "direct", "--profile", "dry", "hi"]
    local = ["chat", "-q", "-m", "direct", "--profile", "local", "--max-tokens", "8", "Say hello."]
    try:
        bench.wall(["--help"])  # fill the page cache before the first figure
        for name, argv in (("help", ["--help"]), ("modes list", ["modes", "list"])):
            rows[name] = {"in-process": median_of(args.runs, bench.wall, argv, False, None)}
        rows["chat dry"] = row_for(bench, args.runs, dry, bench.wall)
        if not args.skip_local:
            rows["first token local"] = row_for(bench, args.runs, local, bench.first_byte)
        if args.before:
            cases = {"help": ["--help"], "modes list": ["modes", "list"], "chat dry": dry}
            old = Bench(args.before.resolve(), Path(tempfile.mkdtemp(prefix="cs-", dir=work)))
            compared = compare(old, bench, args.runs, cases)
    finally:
        bench.stop_worker()
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        table = {name: {k: v and asdict(v) for k, v in row.items()} for name, row in rows.items()}
        pairs = {name: {k: asdict(v) for k, v in pair.items()} for name, pair in compared.items()}
        print(
            json.dumps({"load_average_1m": load, "runs": args.runs, "rows": table, "before": pairs}, indent=2)
        )
        return
    print(f"composite start-up: median wall time of {args.runs} runs (the command's own CPU seconds)")
    print(f"1-minute load average at the start: {load:.2f} on {os.cpu_count()} cores")
    print(
        f"{'':<18} {'in-process':>15} {'worker cold':>15} {'worker warm':>15} {'target':>7}  in-process/warm"
    )
    for name, row in rows.items():
        cells = [cell(row.get(k)) for k in ("in-process", "worker cold", "worker warm")]
        inproc, warm = row.get("in-process"), row.get("worker warm")
        ratio = f"{inproc.wall / warm.wall:.1f}x" if inproc and warm else ""
        print(f"{name:<18} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15} {TARGETS[name]:>5.1f} s  {ratio}")

    if compared:
        print(f"\nbefore ({args.before}) vs now, in-process, {args.runs} interleaved runs each: wall (CPU)")
        for name, pair in compared.items():
            ratio = (pair["after"].cpu or 0.0) / (pair["before"].cpu or 1.0)
            print(
                f"{name:<18} {cell(pair['before']):>15} {cell(pair['after']):>15}  CPU now/before {ratio:.2f}"
            )


if __name__ == "__main__":
    main()
