"""Throughput and latency of `composite serve` against the plain LiteLLM proxy, at concurrency 50.

    python benchmarks/serve_throughput.py                 # about two minutes
    python benchmarks/serve_throughput.py --requests 2000 --rounds 3 --json

A fake OpenAI-compatible upstream (its own process, loopback only) answers every
/v1/chat/completions after a fixed delay. Then, one server at a time:
  (a) the plain LiteLLM proxy (`litellm --config`), model `fake` → openai/fake at the upstream;
  (b) `composite serve`, mode `direct`, its profile mapping every alias to the same model;
  (c) `composite serve`, mode `moa-v1` (four upstream calls per request).
Rounds alternate (a) and (b) so drift on a shared machine hits both; the medians are reported,
with (b)/(a) throughput, the p50 latency (b) adds and each server's CPU per request (/proc).
Figures, not pass/fail: nothing asserts.

    python benchmarks/serve_throughput.py --before OLD_CHECKOUT   # (b) from an older checkout too
    python benchmarks/serve_throughput.py --profile               # CPU per request by component (py-spy)
    python benchmarks/serve_throughput.py --layers                # in-process: one LiteLLM pass vs composite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEY = "sk-bench-master-0123456789abcdef"
UPSTREAM_KEY = "sk-bench-upstream-0123456789"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
CLI_SCRIPT = """
from composite_cli.cli.main import app

if not any(c.name == "serve" for c in app.registered_commands):
    from composite_cli.cli.serve import serve

    app.command("serve")(serve)

if __name__ == "__main__":
    app()
"""


# -- the fake upstream (runs as `python serve_throughput.py --upstream PORT DELAY`) -------------------


def run_upstream(port: int, delay: float) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        await asyncio.sleep(delay)
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Paris."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
            }
        )

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- processes ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.25)
    raise SystemExit(f"{url} did not come up in {timeout:.0f}s")


# -- load -----------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def load(base: str, model: str, requests: int, concurrency: int) -> dict[str, Any]:
    """`requests` chat completions from `concurrency` workers over keep-alive connections."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    remaining = requests
    payload = json.dumps({"model": model, "messages": MESSAGES}).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            async with session.post(f"{base}/v1/chat/completions", data=payload, headers=headers) as response:
                await response.read()
                ok = response.status == 200
            if ok:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "requests": requests,
        "errors": errors,
        "throughput_rps": len(latencies) / wall,
        "p50_ms": pct(latencies, 0.5) if latencies else None,
        "p95_ms": pct(latencies, 0.95) if latencies else None,
    }


def line(f: dict[str, Any]) -> str:
    cpu = f" CPU {f['cpu_ms_per_request']:5.1f} ms/req" if "cpu_ms_per_request" in f else ""
    return f"{f['throughput_rps']:7.0f} req/s  p50 {f['p50_ms']:7.1f} ms  p95 {f['p95_ms']:7.1f} ms{cpu}"


def process_cpu(pid: int) -> float:
    """CPU seconds so far of a process, every thread (/proc; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(base: str, model: str, requests: int, concurrency: int, warmup: int, pid: int) -> dict[str, Any]:
    """The load's figures, and the server's CPU per answered request (all its threads)."""
    asyncio.run(load(base, model, warmup, concurrency))
    before = process_cpu(pid)
    figures = asyncio.run(load(base, model, requests, concurrency))
    answered = max(1, figures["requests"] - figures["errors"])
    figures["cpu_ms_per_request"] = (process_cpu(pid) - before) * 1000 / answered
    return figures


# -- profile (--profile): where each server's CPU goes, by component -----------------------------------

# A sample is charged to the first frame, from the leaf up, whose file matches a rule: library code
# that anyone may call (json, pydantic, asyncio, logging, copy...) is charged to whoever called it.
# The composite rules come first so that LiteLLM called BY composite (the inner pass) is told apart:
# a frame under composite_cli.calls is the inner call, one above CompositeLLM is the outer pass.
COMPONENTS: list[tuple[str, str]] = [
    # LiteLLM's auth re-runs a failing import (its OpenTelemetry plumbing) on every request
    ("imports at request time (failing imports)", "<frozen importlib"),
    ("composite: trace writes", "composite_cli/traces/"),
    ("composite: engine", "composite_cli/engine/"),
    ("composite: runner/events", "composite_cli/runner.py"),
    ("composite: runner/events", "composite_cli/events.py"),
    ("composite: calls.py", "composite_cli/calls.py"),
    ("composite: calls.py", "composite_cli/http_retry.py"),
    ("composite: calls.py", "composite_cli/redact.py"),
    ("composite: provider", "composite_cli/provider.py"),
    ("composite: edge (ASGI middleware)", "composite_cli/serve/"),
    ("LiteLLM pricing", "site-packages/litellm/cost_calculator.py"),
    ("LiteLLM pricing", "site-packages/litellm/litellm_core_utils/llm_cost_calc/"),
    ("LiteLLM pricing", "get_model_info"),
    ("LiteLLM logging/callbacks", "site-packages/litellm/litellm_core_utils/litellm_logging.py"),
    ("LiteLLM logging/callbacks", "site-packages/litellm/integrations/"),
    ("LiteLLM logging/callbacks", "site-packages/litellm/proxy/hooks/"),
    ("LiteLLM logging/callbacks", "site-packages/litellm/proxy/utils.py"),
    ("LiteLLM logging/callbacks", "site-packages/litellm/proxy/spend_tracking/"),
    ("LiteLLM logging/callbacks", "site-packages/litellm/litellm_core_utils/logging_worker.py"),
    ("LiteLLM logging/callbacks", "site-packages/litellm/proxy/db/"),
    ("LiteLLM proxy: auth", "site-packages/litellm/proxy/auth/"),
    ("LiteLLM proxy: request", "site-packages/litellm/proxy/"),
    ("LiteLLM router", "site-packages/litellm/router"),
    ("LiteLLM dispatch (acompletion, response)", "site-packages/litellm/"),
    ("HTTP client (openai, httpx, aiohttp)", "site-packages/openai/"),
    ("HTTP client (openai, httpx, aiohttp)", "site-packages/httpx/"),
    ("HTTP client (openai, httpx, aiohttp)", "site-packages/httpcore/"),
    ("HTTP client (openai, httpx, aiohttp)", "site-packages/aiohttp/"),
    ("HTTP server (uvicorn, starlette, fastapi)", "site-packages/uvicorn/"),
    ("HTTP server (uvicorn, starlette, fastapi)", "site-packages/starlette/"),
    ("HTTP server (uvicorn, starlette, fastapi)", "site-packages/fastapi/"),
    ("HTTP server (uvicorn, starlette, fastapi)", "site-packages/h11/"),
    ("HTTP server (uvicorn, starlette, fastapi)", "site-packages/httptools/"),
]
# Below CompositeLLM, LiteLLM frames belong to the inner call; above it, to the outer pass.
INNER_MARK = "composite_cli/calls.py"


def attribute(stack: list[str]) -> str:
    """The component a sample's stack (root first) is charged to."""
    inner = any(INNER_MARK in frame for frame in stack)
    for frame in reversed(stack):
        for name, needle in COMPONENTS:
            if needle in frame:
                if name.startswith("LiteLLM") and inner:
                    return f"{name} [inner call]"
                return name
    return "other (interpreter, stdlib)"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of a process, by thread id (/proc; Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_names(raw: Path) -> dict[int, str]:
    """Thread id -> Python thread name, from py-spy's `thread (tid): name` frames."""
    names: dict[int, str] = {}
    for row in raw.read_text().splitlines():
        head = row.split(";", 1)[0]
        if head.startswith("thread (") and "):" in head:
            tid, _, name = head[len("thread (") :].partition("):")
            if tid.strip().isdigit():
                names[int(tid)] = name.strip()
    return names


def thread_group(name: str) -> str:
    if name == "MainThread":
        return "event loop (main thread)"
    if name.startswith(("uvloop_", "ThreadPoolExecutor", "asyncio_")):
        return "executor threads (LiteLLM's sync completion() setup)"
    if "trace-writer" in name:
        return "composite trace writer thread"
    return "other threads"


# Leaves where the main thread waits or does the event loop's own C work.
LOOP_LEAVES = (
    "Runner.run (asyncio/runners.py",
    "Server.run (uvicorn/server.py",
    "asyncio_run (uvicorn/_compat.py",
    "run_forever",
    "_run_once",
    "select (selectors.py",
)


def profile_server(
    proc: subprocess.Popen[bytes],
    base: str,
    model: str,
    requests: int,
    concurrency: int,
    out: Path,
    rate: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Load the server while py-spy samples it. Each thread's CPU comes from /proc (exact); the
    main thread's (the event loop's) is split by component in proportion to py-spy's samples."""
    spy_bin = py_spy()
    asyncio.run(load(base, model, 200, concurrency))  # warm
    spy = subprocess.Popen(
        [str(spy_bin), "record", "--pid", str(proc.pid), "--rate", str(rate), "--format", "raw",
         "--nonblocking", "--threads", "--full-filenames", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.5)  # attached
    before = thread_cpu(proc.pid)
    figures = asyncio.run(load(base, model, requests, concurrency))
    after = thread_cpu(proc.pid)
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    spy.wait(timeout=60)
    answered = max(1, figures["requests"] - figures["errors"])
    names = thread_names(out)
    names[proc.pid] = "MainThread"
    cpu: dict[str, float] = {}
    for tid, seconds in after.items():
        group = thread_group(names.get(tid, ""))
        cpu[group] = cpu.get(group, 0.0) + (seconds - before.get(tid, 0.0)) * 1000 / answered
    main_ms = cpu.pop("event loop (main thread)", 0.0)
    shares = main_thread_shares(out)
    by = {f"{name}": main_ms * share for name, share in shares.items()}
    for name, ms in cpu.items():
        by[f"~ {name}"] = ms
    by["= total CPU ms per request"] = main_ms + sum(cpu.values())
    return by, figures


def py_spy() -> Path:
    """py-spy beside this Python (checked before any server starts)."""
    spy_bin = Path(sys.executable).parent / "py-spy"
    if not spy_bin.exists():
        raise SystemExit("--profile needs py-spy in this environment: pip install py-spy==0.4.3")
    return spy_bin


def main_thread_shares(raw: Path) -> dict[str, float]:
    """The fraction of the main thread's samples charged to each component."""
    counts: dict[str, int] = {}
    for row in raw.read_text().splitlines():
        stack_text, _, count = row.rpartition(" ")
        if not count.isdigit() or "MainThread" not in stack_text.split(";", 1)[0]:
            continue
        frames = stack_text.split(";")[1:]
        if frames and LOOP_LEAVES and any(leaf in frames[-1] for leaf in LOOP_LEAVES):
            name = "event loop itself (uvloop: sockets, scheduling)"
        else:
            name = attribute(frames)
        counts[name] = counts.get(name, 0) + int(count)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.items()}


def print_profiles(profiles: dict[str, dict[str, float]]) -> None:
    names = list(profiles)
    keys = sorted(
        {k for p in profiles.values() for k in p}, key=lambda k: (k.startswith("="), k.startswith(" "), k)
    )
    print("CPU per request, ms: threads from /proc (~), the event loop's split by py-spy's samples")
    print(f"{'component':<52}" + "".join(f"{n:>14}" for n in names))
    for key in keys:
        print(f"{key:<52}" + "".join(f"{profiles[n].get(key, 0.0):14.2f}" for n in names))


# -- layers (--layers): one LiteLLM pass against composite's run, in-process -----------------------------


def run_layers(rounds: int, requests: int) -> dict[str, float]:
    """CPU ms per request (median of `rounds`) of: one LiteLLM pass (its mock, no HTTP); the mode
    `direct` through LiteLLM's `composite` provider, as the proxy calls it (the outer pass, the run,
    the inner pass), with the serve handler (internal calls are sub-calls) and with the plain
    provider (every call logged); composite's run alone (the model call answered at once)."""
    work = Path(tempfile.mkdtemp(prefix="serve-layers-"))
    from composite_cli import calls
    from composite_cli.config import Profile, Settings
    from composite_cli.engine.runtime import RunRequest
    from composite_cli.litellm_loader import add_custom_provider, get_litellm
    from composite_cli.provider import CompositeLLM, fill_response
    from composite_cli.serve.handler import ServeCompositeLLM

    litellm = get_litellm()
    from litellm.integrations.custom_logger import CustomLogger

    class ProxyHook(CustomLogger):  # stands for the proxy's own hooks: LiteLLM logs every call
        pass

    ProxyHook.__module__ = "litellm.proxy.hooks.bench"
    litellm.callbacks = [ProxyHook()]
    alias = {"model": "openai/fake", "mock_response": "Paris.", "api_key": UPSTREAM_KEY,
             "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}  # fmt: skip
    settings = Settings(profile=Profile("bench", {"*": alias}), db_path=work / "traces.db")
    handlers = {"serve": ServeCompositeLLM(source="serve"), "plain": CompositeLLM(source="proxy")}
    for handler in handlers.values():
        handler._settings = settings
    answer = litellm.ModelResponse(
        model="fake",
        choices=[
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        usage={"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    )
    answer._hidden_params["response_cost"] = 3e-06

    async def instant(**kwargs: Any) -> Any:
        return answer

    async def one_pass() -> Any:
        return await litellm.acompletion(messages=MESSAGES, **alias)

    def through(handler: CompositeLLM) -> Any:
        async def request() -> Any:
            add_custom_provider(litellm, "composite", handler)
            return await litellm.acompletion(model="composite/direct", messages=MESSAGES)

        return request

    async def run_only() -> Any:
        calls.use_dispatch(instant)
        try:
            runner = handlers["serve"].runner
            result = await runner.run("direct", RunRequest(messages=list(MESSAGES), source="serve"))
        finally:
            calls.use_dispatch(None)
        return fill_response(litellm.ModelResponse(), "direct", [result])

    steps = {
        "one LiteLLM pass (litellm.acompletion, mock answer)": one_pass,
        "composite/direct, serve handler (calls are sub-calls)": through(handlers["serve"]),
        "composite/direct, every call logged (before)": through(handlers["plain"]),
        "composite's run alone (the call answered at once)": run_only,
    }

    async def main() -> dict[str, float]:
        for step in steps.values():
            for _ in range(30):
                await step()
        spent: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(rounds):
            for name, step in steps.items():
                t0 = time.process_time()
                for _ in range(requests):
                    await step()
                spent[name].append((time.process_time() - t0) * 1000 / requests)
            await asyncio.sleep(0.2)  # let the logging tasks of the round finish inside it
        return {name: statistics.median(values) for name, values in spent.items()}

    try:
        return asyncio.run(main())
    finally:
        for handler in handlers.values():
            handler.runner.close()


# -- main -----------------------------------------------------------------------------------------------


def write_server_files(work: Path, api_base: str) -> None:
    """The files both servers start from, in `work`: the plain proxy's config (`plain.yaml`, model
    `fake`), composite's (`composite.yaml`, profile `bench`) and `cli.py`, all on one upstream model,
    priced like a real one so both servers do the same cost accounting."""
    import yaml

    model = {"model": "openai/fake", "api_base": api_base, "api_key": UPSTREAM_KEY,
             "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}  # fmt: skip
    (work / "plain.yaml").write_text(
        yaml.safe_dump({"model_list": [{"model_name": "fake", "litellm_params": model}]})
    )
    (work / "composite.yaml").write_text(
        yaml.safe_dump({"profile": "bench", "profiles": {"bench": {"*": model}}})
    )
    (work / "cli.py").write_text(CLI_SCRIPT)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement (default 1000)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.05, help="the upstream's delay in seconds (0.05)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating (a)/(b) rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the rounds: sample both servers with py-spy under the same load and print "
        "their CPU per request by component (raw stacks kept in --profile-dir)",
    )
    parser.add_argument("--profile-dir", type=Path, default=None, help="where py-spy's output goes")
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second (250)")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="also serve composite from this checkout (same venv, PYTHONPATH) in the same rounds",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="no servers: CPU per request of one LiteLLM pass, of composite/direct through LiteLLM's "
        "provider (the proxy's path without HTTP) and of composite's run alone, in this process",
    )
    parser.add_argument("--single", type=int, default=100, help="requests one at a time (default 100)")
    parser.add_argument("--upstream", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(int(args.upstream[0]), float(args.upstream[1]))
        return
    if args.profile:
        py_spy()
    if args.layers:
        figures = run_layers(args.rounds * 2 + 1, 200)
        print(f"CPU ms per request, in-process, median of {args.rounds * 2 + 1} rounds of 200 "
              f"(load {os.getloadavg()[0]:.1f}):")  # fmt: skip
        for name, ms in figures.items():
            print(f"  {name:<56} {ms:6.2f}")
        return

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_")}
    env.update(
        LITELLM_MASTER_KEY=KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        HOME=str(work),
        XDG_CONFIG_HOME=str(work / ".config"),
    )
    up_port, plain_port, serve_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    write_server_files(work, upstream)
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start(
                [sys.executable, __file__, "--upstream", str(up_port), str(args.delay)],
                env,
                work / "up.log",
                work,
            )
        )
        wait_http(f"http://127.0.0.1:{up_port}/", procs[-1], work / "up.log")
        plain = start(
            [str(bin_dir / "litellm"), "--config", str(work / "plain.yaml"), "--host", "127.0.0.1",
             "--port", str(plain_port)],
            env, work / "plain.log", work,
        )  # fmt: skip
        procs.append(plain)
        servers = {"plain": (plain, f"http://127.0.0.1:{plain_port}", "fake")}
        checkouts = {"direct": None, **({"before": args.before.resolve()} if args.before else {})}
        for name, checkout in checkouts.items():
            port = serve_port if name == "direct" else free_port()
            server_env = dict(env)
            if checkout is not None:  # the same venv, composite_cli from the other checkout
                server_env["PYTHONPATH"] = str(checkout)
            proc = start(
                [sys.executable, str(work / "cli.py"), "serve", "--config", str(work / "composite.yaml"),
                 "--port", str(port), "--modes", "direct,moa", "--db", str(work / f"traces-{name}.db")],
                server_env, work / f"{name}.log", work,
            )  # fmt: skip
            procs.append(proc)
            servers[name] = (proc, f"http://127.0.0.1:{port}", "direct")
        for name, (proc, base, _) in servers.items():
            wait_http(f"{base}/health/liveliness", proc, work / f"{name}.log")
        serve_url = servers["direct"][1]
        serve = servers["direct"][0]

        if args.profile:
            out_dir = args.profile_dir or work
            out_dir.mkdir(parents=True, exist_ok=True)
            measured = {
                name: profile_server(
                    proc, base, target, args.requests, args.concurrency, out_dir / f"{name}.txt",
                    args.profile_rate,
                )
                for name, (proc, base, target) in servers.items()
            }  # fmt: skip
            profiles = {name: by for name, (by, _) in measured.items()}
            for name, (_, figures) in measured.items():
                print(f"{name:>6} under py-spy: {line(figures)}  errors {figures['errors']}")
            print_profiles(profiles)
            print(f"raw py-spy stacks: {out_dir}")
            return
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for i in range(args.rounds):
            for name, (proc, base, target) in servers.items():
                figures = measure(base, target, args.requests, args.concurrency, args.warmup, proc.pid)
                runs[name].append(figures)
                print(f"round {i + 1} {name:>6}: {line(figures)}  errors {figures['errors']}  load "
                      f"{os.getloadavg()[0]:.1f}", file=sys.stderr)  # fmt: skip
        moa = measure(serve_url, "moa", args.requests // 2, args.concurrency, args.warmup // 2, serve.pid)
        # one request at a time: the latency each server adds, without queueing behind the CPU
        single = {
            name: measure(base, target, args.single, 1, 10, proc.pid)
            for name, (proc, base, target) in servers.items()
        }
    finally:
        for proc in reversed(procs):
            stop(proc)

    keys = ("throughput_rps", "p50_ms", "p95_ms", "cpu_ms_per_request")

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    result: dict[str, Any] = {
        "concurrency": args.concurrency,
        "upstream_delay_ms": args.delay * 1000,
        "requests_per_measurement": args.requests,
        "rounds": args.rounds,
        "load_average_1min": os.getloadavg()[0],
        "plain_litellm": {k: med("plain", k) for k in keys},
        "composite_direct": {k: med("direct", k) for k in keys},
        "composite_moa": {k: moa[k] for k in keys},
        "errors": sum(r["errors"] for rs in runs.values() for r in rs) + moa["errors"],
    }
    if "before" in runs:
        result["composite_direct_before"] = {k: med("before", k) for k in keys}
    for name, label in (("direct", ""), ("before", "_before")):
        if name not in runs:
            continue
        # the ratio of each round's pair (measured side by side), then the median
        result[f"throughput_ratio{label}"] = statistics.median(
            d["throughput_rps"] / p["throughput_rps"] for d, p in zip(runs[name], runs["plain"], strict=True)
        )
        result[f"added_p50_ms{label}"] = statistics.median(
            d["p50_ms"] - p["p50_ms"] for d, p in zip(runs[name], runs["plain"], strict=True)
        )
        # (a)'s CPU per request over (b)'s: the throughput ratio of a CPU-bound server on a quiet
        # machine (on a busy one, a process with more runnable threads gets more of the CPU)
        result[f"cpu_ratio{label}"] = statistics.median(
            p["cpu_ms_per_request"] / d["cpu_ms_per_request"]
            for d, p in zip(runs[name], runs["plain"], strict=True)
        )
    result["concurrency_1"] = {f"{name}_p50_ms": single[name]["p50_ms"] for name in single} | {
        f"{name}_cpu_ms_per_request": single[name]["cpu_ms_per_request"] for name in single
    }
    result["concurrency_1"]["added_p50_ms"] = single["direct"]["p50_ms"] - single["plain"]["p50_ms"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    p, d, m = result["plain_litellm"], result["composite_direct"], result["composite_moa"]
    print(f"concurrency {args.concurrency}, upstream delay {args.delay * 1000:.0f} ms, {args.requests} "
          f"requests x {args.rounds} rounds (medians), load {result['load_average_1min']:.1f}")  # fmt: skip
    print(f"(a) plain LiteLLM proxy     {line(p)}")
    print(f"(b) composite serve direct  {line(d)}")
    if "composite_direct_before" in result:
        print(f"    same, before            {line(result['composite_direct_before'])}")
    print(f"    composite serve moa-v1  {line(m)}")
    ratio, added = result["throughput_ratio"], result["added_p50_ms"]
    print(f"(b)/(a) throughput {ratio:.3f} (target >= 1.0)   added p50 {added:+.1f} ms (target <= 5 ms)")
    print(f"(a)/(b) CPU per request {result['cpu_ratio']:.3f} (what (b)/(a) throughput is when both are "
          "CPU-bound on a quiet machine)")  # fmt: skip
    if "throughput_ratio_before" in result:
        print(f"before: (b)/(a) throughput {result['throughput_ratio_before']:.3f}   added p50 "
              f"{result['added_p50_ms_before']:+.1f} ms   (a)/(b) CPU per request "
              f"{result['cpu_ratio_before']:.3f}")  # fmt: skip
    one = result["concurrency_1"]
    each = [f"{n} {one[f'{n}_p50_ms']:.1f} ms ({one[f'{n}_cpu_ms_per_request']:.1f})" for n in single]
    print(f"one request at a time, p50 (server CPU ms per request): {', '.join(each)}; "
          f"composite adds {one['added_p50_ms']:+.1f} ms")  # fmt: skip
    print(f"errors {result['errors']}")


if __name__ == "__main__":
    main()
