"""Reliability figures in one command: load through `composite serve`, injected faults, kill -9.

    python benchmarks/reliability.py                      # about half a minute on 2 cores
    python benchmarks/reliability.py --requests 200 --fault-runs 100 --json

Everything runs on loopback with LiteLLM mock models (no network, no keys):

1. Load: `composite serve` (2 workers, mock models answering in 50 ms) gets `--requests`
   concurrent moa-v1 requests at once. Throughput, p50/p95/p99 latency, errors; then, after a
   graceful stop, the runs in the trace database against the run ids the responses carried:
   lost (a response whose run is missing or not `ok`), duplicated (a run no response accounts
   for, or one id twice) and `PRAGMA integrity_check`.
   Then kill -9: a one-worker server with requests stuck in flight is killed with SIGKILL; the
   database must open cleanly and every interrupted run end as an `error` ("interrupted: ...").
2. Faults (in-process, the `faulty/...` provider): moa-v1 with 20% of expert calls failing;
   rate limits (50% of calls) under a per-step policy of `retries: 3`; fallbacks per alias
   (the first model always rate-limited, the second answers).
3. kill -9 during an eval (`composite eval` subprocess), then `--resume`: cases lost and
   duplicated, finished cases run again.

Figures, not pass/fail; the exit status is 1 if anything was lost, duplicated or corrupted.
tests/test_serve_reliability.py asserts the same properties.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

KEY = "sk-bench-reliability-0123456789abcdef"
ANSWER = "Paris is the capital."
USER = [{"role": "user", "content": "What is the capital of France?"}]
COMPOSITE = str(Path(sys.executable).with_name("composite"))
MOCK = {"model": "openai/gpt-4o-mini", "mock_response": ANSWER}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def query(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def integrity(path: Path) -> str:
    return str(query(path, "pragma integrity_check")[0][0])


# -- server processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        LITELLM_MASTER_KEY=KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        PYTHONUNBUFFERED="1",
    )
    return env


class Server:
    """`composite serve` in its own process group, so kill -9 takes its workers too."""

    def __init__(self, work: Path, name: str, *extra: str, workers: int = 1):
        self.port, self.workers = free_port(), workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = work / f"{name}.db"
        self.log = work / f"{name}.log"
        argv = [COMPOSITE, "serve", "--config", str(work / "composite.yaml"), "--port", str(self.port)]
        argv += ["--db", str(self.db), "--workers", str(workers), "--modes", "moa,direct", *extra]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=work,
                env=child_env(work / f"home-{name}"),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 180) -> Server:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"the server exited ({self.proc.returncode}):\n{self.log.read_text()[-2000:]}"
                )
            text = self.log.read_text(errors="replace")
            if text.count("Application startup complete") >= self.workers:
                try:
                    if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.25)
        raise SystemExit(f"the server did not start in {timeout:.0f}s")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole group (uvicorn and its workers), then reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


@contextmanager
def servers(*started: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
                try:
                    server.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
            server.kill()


# -- 1. load through serve ---------------------------------------------------------------------------


async def concurrent_requests(url: str, n: int, model: str) -> tuple[list[tuple[str | None, float]], float]:
    """n requests at once; (run id or None on any failure, latency in ms) each, and the wall time."""
    import httpx

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    timeout = httpx.Timeout(120.0, connect=30.0)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=headers) as http:

        async def one(i: int) -> tuple[str | None, float]:
            t0 = time.perf_counter()
            body = {"model": model, "messages": [{"role": "user", "content": f"Capital of France? ({i})"}]}
            try:
                response = await http.post(f"{url}/v1/chat/completions", json=body)
                ok = (
                    response.status_code == 200
                    and response.json()["choices"][0]["message"]["content"] == ANSWER
                )
                run_id = response.headers.get("x-composite-run-id") if ok else None
            except Exception:
                run_id = None
            return run_id, (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        return list(results), time.perf_counter() - t0


def load(server: Server, requests: int) -> dict[str, Any]:
    results, wall = asyncio.run(concurrent_requests(server.url, requests, "moa"))
    exit_code = server.stop()  # graceful: every worker commits its traces
    ids = [run_id for run_id, _ in results if run_id]
    latencies = [ms for _, ms in results]
    stored = query(server.db, "select id, status from runs where source = 'serve'")
    status = dict(stored)
    lost = sum(1 for run_id in ids if status.get(run_id) != "ok")
    duplicated = (len(ids) - len(set(ids))) + len(set(status) - set(ids))
    return {
        "requests": requests,
        "mode": "moa-v1",
        "workers": server.workers,
        "errors": requests - len(ids),
        "wall_s": round(wall, 2),
        "throughput_rps": round(requests / wall, 1),
        "p50_ms": round(pct(latencies, 0.5) or 0),
        "p95_ms": round(pct(latencies, 0.95) or 0),
        "p99_ms": round(pct(latencies, 0.99) or 0),
        "serve_runs": len(stored),
        "lost": lost,
        "duplicated": duplicated,
        "integrity": integrity(server.db),
        "exit_code": exit_code,
    }


def kill_serve(server: Server, in_flight: int = 8) -> dict[str, Any]:
    """Requests stuck in flight (mock models that take minutes), then kill -9 the server."""
    import httpx

    from composite_cli.traces.store import TraceStore

    headers = {"Authorization": f"Bearer {KEY}"}
    answered = [
        httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "moa", "messages": USER},
            headers=headers,
            timeout=60,
        )
        for _ in range(4)
    ]
    answered_ids = [r.headers["x-composite-run-id"] for r in answered if r.status_code == 200]
    # the introspection API commits this worker's queued writes before it answers
    httpx.get(f"{server.url}/composite/traces/{answered_ids[-1]}", headers=headers, timeout=60)

    def stuck(i: int) -> int | None:
        body = {"model": "moa" if i % 2 else "direct", "messages": USER, "composite": {"profile": "stuck"}}
        try:
            return httpx.post(
                f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30
            ).status_code
        except httpx.HTTPError:
            return None

    with ThreadPoolExecutor(in_flight) as pool:
        futures = [pool.submit(stuck, i) for i in range(in_flight)]
        deadline = time.monotonic() + 30
        running: list[str] = []
        while len(running) < in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
            running = [r[0] for r in query(server.db, "select id from runs where status = 'running'")]
        server.kill()
        client_errors = sum(1 for f in futures if f.result(timeout=60) is None)
    integrity_after_kill = integrity(server.db)
    TraceStore(server.db).open().close()  # what the next composite process does at start-up
    runs = dict(query(server.db, "select id, status || ':' || coalesce(error, '') from runs"))
    return {
        "in_flight": len(running),
        "client_errors": client_errors,
        "integrity_after_kill": integrity_after_kill,
        "interrupted_marked": sum(1 for r in running if runs.get(r, "").startswith("error:interrupted:")),
        "left_running": sum(1 for v in runs.values() if v.startswith("running:")),
        "answered_before_kill_ok": sum(1 for r in answered_ids if runs.get(r, "").startswith("ok:")),
        "answered_before_kill": len(answered_ids),
        "integrity": integrity(server.db),
    }


# -- 2. faults, in-process ------------------------------------------------------------------------------


async def faults(work: Path, runs: int) -> dict[str, Any]:
    import composite_cli.faults
    from composite_cli.config import Profile, Settings
    from composite_cli.engine.runtime import RunRequest
    from composite_cli.errors import FanoutFailed
    from composite_cli.litellm_loader import get_litellm
    from composite_cli.runner import Runner

    get_litellm()  # registers the faulty/ provider
    injected: Counter[str] = Counter()
    original = composite_cli.faults.FaultyLLM._fault

    def counting(self: Any, options: dict[str, Any], model: str) -> Exception:
        injected[model] += 1
        return original(self, options, model)

    composite_cli.faults.FaultyLLM._fault = counting  # type: ignore[method-assign]
    out: dict[str, Any] = {}

    # (a) moa-v1, 20% of expert calls fail
    chaos = {
        "fast": {
            "model": "faulty/expert",
            "fault_rate": 0.2,
            "fault": "server_error",
            "fault_seed": 7,
            "answer": "Paris",
        },
        "*": {**MOCK},
    }
    db = work / "faults.db"
    runner = Runner(Settings(profile=Profile("chaos", chaos), db_path=db))
    answered = failed = 0
    for _ in range(runs):
        try:
            await runner.run("moa-v1", RunRequest(messages=USER))
            answered += 1
        except FanoutFailed:
            failed += 1
    runner.close()
    experts = query(
        db, "select status, count(*) from steps where kind = 'llm' and name != 'answer' group by status"
    )
    by_status = dict(experts)
    min_success_errors = query(
        db, "select count(*) from runs where status = 'error' and error like '%min_success%'"
    )
    out["moa_20pct"] = {
        "runs": runs,
        "answered": answered,
        "failed_runs": failed,
        "failed_runs_recorded": min_success_errors[0][0],
        "expert_calls": sum(by_status.values()),
        "injected_faults": injected["faulty/expert"],
        "failed_expert_calls_recorded": by_status.get("error", 0),
    }

    # (b) rate limits under a per-step retry policy
    modes = work / "modes"
    modes.mkdir(exist_ok=True)
    (modes / "retrying.yaml").write_text(
        "name: retrying\nsteps:\n  - {id: answer, kind: call, model: strong, retries: 3, backoff: 0.01}\n",
        encoding="utf-8",
    )
    flaky = {
        "strong": {
            "model": "faulty/flaky",
            "fault_rate": 0.5,
            "fault": "rate_limit",
            "fault_seed": 3,
            "answer": "Paris",
        }
    }
    db = work / "retries.db"
    runner = Runner(Settings(profile=Profile("flaky", flaky), db_path=db, modes_path=(modes,)))
    recovered = failed = 0
    for _ in range(runs):
        try:
            await runner.run("retrying", RunRequest(messages=USER))
        except Exception:  # the rate limit, after the last attempt
            failed += 1
    runner.close()
    calls = query(db, "select status, coalesce(retries, 0) from steps where kind = 'llm'")
    rate_limited = [c for c in calls if c[1] > 0 or c[0] == "error"]
    recovered = sum(1 for c in rate_limited if c[0] == "ok")
    out["retries"] = {
        "runs": runs,
        "rate_limited_calls": len(rate_limited),
        "recovered": recovered,
        "failed_after_4_attempts": failed,
        "retries_recorded": sum(c[1] for c in calls),
        "injected_faults": injected["faulty/flaky"],
    }

    # (c) fallbacks per alias
    fallback = {
        "strong": [
            {"model": "faulty/a", "fault_rate": 1.0, "fault": "rate_limit"},
            {"model": "faulty/b", "answer": "from the backup"},
        ]
    }
    db = work / "fallbacks.db"
    runner = Runner(Settings(profile=Profile("fallback", fallback), db_path=db))
    recovered = failed = 0
    for _ in range(runs):
        try:
            result = await runner.run("direct", RunRequest(messages=USER))
            recovered += result.text == "from the backup"
        except Exception:
            failed += 1
    runner.close()
    recorded = query(db, "select response_json from steps where kind = 'llm' and model = 'faulty/b'")
    out["fallbacks"] = {
        "runs": runs,
        "primary_failures": injected["faulty/a"],
        "recovered": recovered,
        "failed": failed,
        "fallbacks_recorded": sum(1 for (r,) in recorded if r and json.loads(r).get("fallbacks")),
    }
    composite_cli.faults.FaultyLLM._fault = original  # type: ignore[method-assign]
    return out


# -- 3. kill -9 during an eval, then --resume ---------------------------------------------------------


def kill_eval(work: Path, cases: int = 24) -> dict[str, Any]:
    eval_dir = work / "eval"
    eval_dir.mkdir()
    (eval_dir / "composite.yaml").write_text(
        json.dumps({"profile": "slow", "profiles": {"slow": {"*": {**MOCK, "mock_delay": 0.3}}}})
    )
    lines = [
        {"id": f"c{i:02d}", "input": f"Capital of France? ({i})", "expected": "Paris", "scorer": "contains"}
        for i in range(cases)
    ]
    (eval_dir / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in lines))
    db = eval_dir / "traces.db"
    env = child_env(eval_dir / "home")
    proc = subprocess.Popen(
        [COMPOSITE, "eval", "e.jsonl", "-m", "moa", "-c", "3"],
        cwd=eval_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if db.exists() and query(db, "select count(*) from eval_results")[0][0] >= cases // 4:
                    break
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    integrity_after_kill = integrity(db)
    eval_id = query(db, "select id from eval_runs")[0][0]
    done_before = query(db, "select count(*) from eval_results")[0][0]
    running_at_kill = query(db, "select count(*) from runs where status = 'running'")[0][0]
    runs_before = query(db, "select count(*) from runs where source = 'eval'")[0][0]
    resumed = subprocess.run(
        [COMPOSITE, "eval", "--resume", eval_id, "--json"],
        cwd=eval_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = [r[0] for r in query(db, "select case_id from eval_results where eval_run_id = ?", (eval_id,))]
    runs_after = query(db, "select count(*) from runs where source = 'eval'")[0][0]
    return {
        "cases": cases,
        "done_at_kill": done_before,
        "runs_in_flight_at_kill": running_at_kill,
        "integrity_after_kill": integrity_after_kill,
        "resume_exit_code": resumed.returncode,
        "lost": len({c["id"] for c in lines} - set(results)),
        "duplicated": len(results) - len(set(results)),
        "rerun_finished": (runs_after - runs_before) - (cases - done_before),
        "interrupted_marked": query(db, "select count(*) from runs where error like 'interrupted:%'")[0][0],
        "left_running": query(db, "select count(*) from runs where status = 'running'")[0][0],
        "eval_status": query(db, "select status from eval_runs where id = ?", (eval_id,))[0][0],
        "integrity": integrity(db),
    }


# -- report ---------------------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    load, kill, f, ev = r["load"], r["kill_serve"], r["faults"], r["kill_eval"]
    moa, retry, fb = f["moa_20pct"], f["retries"], f["fallbacks"]
    rows = [
        ("what", "measured", "lost / duplicated"),
        (
            f"{load['requests']} concurrent moa-v1 requests, serve ({load['workers']} workers)",
            f"{load['throughput_rps']} req/s, p50 {load['p50_ms']} / p95 {load['p95_ms']} / "
            f"p99 {load['p99_ms']} ms, {load['errors']} errors, integrity {load['integrity']}",
            f"{load['lost']} / {load['duplicated']} ({load['serve_runs']} serve runs)",
        ),
        (
            "kill -9 of serve, requests in flight",
            f"{kill['interrupted_marked']}/{kill['in_flight']} in-flight runs marked interrupted, "
            f"{kill['left_running']} left running, integrity {kill['integrity_after_kill']}",
            f"{kill['answered_before_kill'] - kill['answered_before_kill_ok']} / 0",
        ),
        (
            f"moa-v1, 20% of expert calls fail ({moa['runs']} runs)",
            f"{moa['answered']} answered, {moa['failed_runs']} failed (min_success), "
            f"{moa['failed_expert_calls_recorded']}/{moa['injected_faults']} failed expert calls recorded",
            f"{moa['injected_faults'] - moa['failed_expert_calls_recorded']} / 0",
        ),
        (
            f"rate limits on 50% of calls, retries: 3 ({retry['runs']} runs)",
            f"{retry['recovered']}/{retry['rate_limited_calls']} rate-limited calls recovered, "
            f"{retry['failed_after_4_attempts']} failed after 4 attempts, "
            f"{retry['retries_recorded']} retries recorded",
            "0 / 0",
        ),
        (
            f"fallbacks: strong = [faulty/a (always 429), faulty/b] ({fb['runs']} runs)",
            f"{fb['recovered']}/{fb['runs']} recovered, {fb['fallbacks_recorded']} fallbacks recorded",
            "0 / 0",
        ),
        (
            f"kill -9 during an eval ({ev['cases']} cases), then --resume",
            f"{ev['done_at_kill']} done at the kill, {ev['interrupted_marked']} runs marked interrupted, "
            f"{ev['rerun_finished']} finished cases rerun, eval {ev['eval_status']}, "
            f"integrity {ev['integrity']}",
            f"{ev['lost']} / {ev['duplicated']}",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def clean(r: dict[str, Any]) -> bool:
    load, kill, ev = r["load"], r["kill_serve"], r["kill_eval"]
    moa = r["faults"]["moa_20pct"]
    return (
        load["errors"] == load["lost"] == load["duplicated"] == 0
        and load["integrity"] == kill["integrity_after_kill"] == kill["integrity"] == ev["integrity"] == "ok"
        and kill["interrupted_marked"] == kill["in_flight"] > 0
        and kill["left_running"] == ev["left_running"] == 0
        and ev["lost"] == ev["duplicated"] == ev["rerun_finished"] == 0
        and moa["injected_faults"] == moa["failed_expert_calls_recorded"]
        and moa["failed_runs"] == moa["failed_runs_recorded"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="concurrent requests (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="serve worker processes (default 2)")
    parser.add_argument("--fault-runs", type=int, default=100, help="runs per fault scenario (default 100)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--keep", action="store_true", help="keep the databases and logs (kept anyway on failure)"
    )
    args = parser.parse_args()

    import yaml

    work = Path(tempfile.mkdtemp(prefix="composite-reliability-"))
    profiles = {
        "mock": {"*": {**MOCK, "mock_delay": 0.05}},
        "stuck": {"*": {**MOCK, "mock_delay": 300}},
    }
    (work / "composite.yaml").write_text(yaml.safe_dump({"profile": "mock", "profiles": profiles}))
    t0 = time.perf_counter()
    load_server = Server(work, "load", workers=args.workers)
    kill_server = Server(work, "kill")
    with servers(load_server, kill_server):
        load_server.wait_ready()
        kill_server.wait_ready()
        report: dict[str, Any] = {"load": load(load_server, args.requests)}
        report["kill_serve"] = kill_serve(kill_server)
    report["faults"] = asyncio.run(faults(work, args.fault_runs))
    report["kill_eval"] = kill_eval(work)
    report["clean"] = clean(report)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    keep = args.keep or not report["clean"]
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
        where = f", files in {work}" if keep else ""
        verdict = "yes" if report["clean"] else "NO"
        print(f"\nnothing lost, duplicated or corrupted: {verdict} ({report['wall_s']} s{where})")
    sys.exit(0 if report["clean"] else 1)


if __name__ == "__main__":
    main()
