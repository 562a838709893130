"""optillm, composite and a plain LiteLLM proxy side by side, on one scripted upstream, in one run.

    python benchmarks/peers.py --before OLD_CHECKOUT   # 4 servers, 3 rounds: 9 minutes here
    python benchmarks/peers.py --rounds 5 --json

A scripted OpenAI-compatible upstream (its own process, loopback only, no network) answers every
/v1/chat/completions after a fixed delay (300 ms): `n` choices when asked for `n`, and with
`stream: true` the same answer in 5 chunks spread over the delay (the first after 60 ms). It
records when each call started and ended, so the benchmark sees how many calls a request made,
in how many sequential rounds, and how much of the request's wall time was not spent waiting on
the upstream. Three servers forward to it:

  optillm       `optillm --base-url <upstream>`; model `moa-fake` is its mixture of agents (one
                call with n=3, a critique, a final answer: three calls in a row), model `fake`
                passes the request through.
  composite     `composite serve`, mode `moa` (moa-v1: three proposers in parallel, then an
                aggregator) and mode `direct`; the profile maps every alias to the upstream.
  plain LiteLLM `litellm --config`, model `fake` (no MoA: its column has the direct rows only).

Each round runs every measurement against every server in turn, so load from other jobs on a
shared machine hits all of them; the table shows the medians over the rounds:

  - one request at a time: wall time, upstream calls and their sequential rounds, and the wall
    time spent beyond the upstream's (the server's own time on the critical path);
  - streaming: time to the first chunk with content, and how many chunks carried content;
  - server CPU per request: utime + stime of the server's process tree (/proc/<pid>/stat) over a
    batch of requests at concurrency 8, less the server's idle CPU over the same time;
  - throughput at concurrency 16, with the CPU share the server's process tree got meanwhile
    (on a machine busy with other jobs, a server bound by its CPU runs at that share).

optillm is not a dependency of composite. Install it in its own venv, without its declared
dependencies (they include torch and transformers, which its proxy and MoA do not import); the
second line is what its server imports at start, found by trying (plugins that need more are
skipped with a log line). The benchmark finds it at /tmp/optillm-venv/bin/optillm, on PATH, or at
--optillm:

    python3 -m venv /tmp/optillm-venv
    /tmp/optillm-venv/bin/pip install --no-deps optillm==0.4.0
    /tmp/optillm-venv/bin/pip install flask openai cerebras_cloud_sdk 'z3-solver<=4.15.4.0' sympy \\
        numpy networkx math-verify pyyaml aiohttp

Without it the benchmark still runs the other columns and prints these lines. `--before CHECKOUT`
adds a column for `composite serve` from an older checkout (its composite_cli first on PYTHONPATH),
measured in the same rounds.
Figures, not pass/fail: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_throughput import KEY, UPSTREAM_KEY, free_port, start, stop, wait_http, write_server_files

OPTILLM_DEFAULT = "/tmp/optillm-venv/bin/optillm"
OPTILLM_VERSION = "0.4.0"
INSTALL = f"""\
optillm is not installed; its column is skipped. To add it (its own venv, so its pins do not touch
composite's):
    python3 -m venv /tmp/optillm-venv
    /tmp/optillm-venv/bin/pip install --no-deps optillm=={OPTILLM_VERSION}
    /tmp/optillm-venv/bin/pip install flask openai cerebras_cloud_sdk 'z3-solver<=4.15.4.0' sympy \\
        numpy networkx math-verify pyyaml aiohttp
then run this again (or pass --optillm /path/to/bin/optillm)."""
ANSWER = "Paris is the capital of France."
STREAM_CHUNKS = 5
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
CPU_REQUESTS = 40  # per CPU measurement, at concurrency 8
CPU_CONCURRENCY = 8
THROUGHPUT_CONCURRENCY = 16


# -- the scripted upstream (runs as `python peers.py --upstream PORT DELAY`) ---------------------------


def split_answer(text: str, parts: int) -> list[str]:
    """`text` cut into `parts` non-empty pieces (fewer if it is shorter), in order."""
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    out, at = [], 0
    for i in range(parts):
        n = size + (1 if i < extra else 0)
        out.append(text[at : at + n])
        at += n
    return out


def completion(body: dict[str, Any], created: int) -> dict[str, Any]:
    """The non-streamed reply: `n` choices of the same answer."""
    n = body.get("n") or 1
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": created,
        "model": body.get("model", "fake"),
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8 * n, "total_tokens": 12 + 8 * n},
    }


def stream_events(body: dict[str, Any], created: int) -> list[dict[str, Any]]:
    """The streamed reply's chunks (role, content pieces, stop, then usage when asked for)."""
    model = body.get("model", "fake")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    pieces = split_answer(ANSWER, STREAM_CHUNKS)
    events = [chunk({"role": "assistant", "content": pieces[0]})]
    events += [chunk({"content": p}) for p in pieces[1:]]
    events.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
            }
        )
    return events


def upstream_app(delay: float) -> Any:
    """The upstream as a Starlette app. GET /calls returns (and forgets) the calls recorded so far:
    [start, end] in CLOCK_MONOTONIC seconds (shared by every process on the machine), end null
    while a call runs."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    calls: list[list[float | None]] = []

    async def chat(request: Request) -> Any:
        record: list[float | None] = [time.monotonic(), None]
        calls.append(record)
        body = await request.json()
        created = int(time.time())
        if not body.get("stream"):
            await asyncio.sleep(delay)
            record[1] = time.monotonic()
            return JSONResponse(completion(body, created))
        events = stream_events(body, created)
        step = delay / STREAM_CHUNKS

        async def sse() -> Any:
            for i, event in enumerate(events):
                if i < STREAM_CHUNKS:
                    await asyncio.sleep(step)
                yield f"data: {json.dumps(event)}\n\n"
            record[1] = time.monotonic()
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    async def recorded(request: Request) -> JSONResponse:
        out = [list(c) for c in calls]
        calls.clear()
        return JSONResponse(out)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/calls", recorded, methods=["GET"]),
        ]
    )


def run_upstream(port: int, delay: float) -> None:
    import uvicorn

    uvicorn.run(upstream_app(delay), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- what the upstream's record says -------------------------------------------------------------------


def rounds_of(calls: Sequence[Sequence[float | None]]) -> int:
    """How many sequential rounds the calls made: a call that starts after every call before it
    has ended opens a new round; one that starts while another runs joins it."""
    count, frontier = 0, float("-inf")
    for begin, end in sorted((c[0], c[1]) for c in calls if c[0] is not None):
        assert begin is not None
        if begin >= frontier:
            count += 1
            frontier = end if end is not None else float("inf")
        elif end is None or end > frontier:
            frontier = end if end is not None else float("inf")
    return count


def busy_time(calls: Sequence[Sequence[float | None]], until: float) -> float:
    """Seconds during which at least one call was running (the union of their intervals; a call
    still running counts up to `until`)."""
    total, cur_start, cur_end = 0.0, None, None
    for begin, end in sorted((c[0], c[1] if c[1] is not None else until) for c in calls):
        assert begin is not None and end is not None
        if cur_end is None or begin > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = begin, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


# -- server CPU ----------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in clock ticks) of a live process, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name, in brackets, may hold spaces
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root` and every live descendant of it."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := _stat(int(entry))) is not None:
            stats[int(entry)] = s
    ticks, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        ticks += stats[pid][1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the client ----------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    base: str
    token: str
    models: dict[str, str | None]  # "direct" / "moa" -> the model name, None where it has none
    proc: subprocess.Popen[bytes] | None = None
    idle_cpu_per_s: float = 0.0


@dataclass
class Answer:
    ok: bool
    wall: float  # seconds
    first_content: float | None = None  # seconds to the first chunk with content (streams)
    content_chunks: int = 0
    text: str = ""
    error: str = ""


async def ask(session: Any, server: Server, model: str, *, stream: bool = False) -> Answer:
    payload: dict[str, Any] = {"model": model, "messages": MESSAGES}
    if stream:
        payload["stream"] = True
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    t0 = time.perf_counter()
    async with session.post(f"{server.base}/v1/chat/completions", json=payload, headers=headers) as r:
        if r.status != 200:
            body = (await r.text())[:200]
            return Answer(False, time.perf_counter() - t0, error=f"{r.status} {body}")
        if not stream:
            data = await r.json(content_type=None)
            text = data["choices"][0]["message"]["content"] or ""
            return Answer(True, time.perf_counter() - t0, text=text)
        first, chunks, parts = None, 0, []
        async for raw in r.content:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    chunks += 1
                    parts.append(piece)
                    if first is None:
                        first = time.perf_counter() - t0
        return Answer(True, time.perf_counter() - t0, first, chunks, "".join(parts))


async def batch(server: Server, model: str, requests: int, concurrency: int) -> tuple[list[Answer], float]:
    """`requests` requests from `concurrency` workers; the answers and the wall time in seconds."""
    import aiohttp

    answers: list[Answer] = []
    remaining = requests

    async def worker(session: Any) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            answers.append(await ask(session, server, model))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
        return answers, time.perf_counter() - t0


async def one_by_one(
    server: Server, model: str, upstream: str, count: int, *, stream: bool
) -> list[dict[str, Any]]:
    """`count` requests one after another, each with what the upstream saw of it."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        for _ in range(count):
            await (await s.get(f"{upstream}/calls")).json()  # forget earlier calls
            began = time.monotonic()
            answer = await ask(s, server, model, stream=stream)
            ended = time.monotonic()
            await asyncio.sleep(0.05)  # let the server's last upstream call be recorded as ended
            calls = [c for c in await (await s.get(f"{upstream}/calls")).json() if c[0] <= ended]
            out.append(
                {
                    "answer": answer,
                    "calls": len(calls),
                    "rounds": rounds_of(calls),
                    "beyond_upstream": (ended - began) - busy_time(calls, ended),
                }
            )
    return out


# -- one round -----------------------------------------------------------------------------------------

Figures = dict[str, dict[str, list[float]]]  # server -> figure -> one value per round


def _note(figures: Figures, server: str, key: str, values: Sequence[float | None], scale: float = 1) -> None:
    """Adds the median of `values` (those not None; nothing when there are none), times `scale`."""
    known = [v for v in values if v is not None]
    if known:
        figures.setdefault(server, {}).setdefault(key, []).append(scale * statistics.median(known))


def measure_round(servers: Sequence[Server], upstream: str, singles: int, figures: Figures) -> int:
    """Every measurement on every server once, each measurement on all servers before the next
    (so drift in the machine's load hits them alike); returns the number of failed requests."""
    errors = 0

    def count_failed(answers: Sequence[Answer], what: str, server: Server) -> int:
        bad = [a for a in answers if not a.ok]
        if bad:
            print(f"  {server.name} {what}: {len(bad)} failed, e.g. {bad[0].error}", file=sys.stderr)
        return len(bad)

    for kind in ("moa", "direct"):
        serving = [(s, m) for s in servers if (m := s.models.get(kind)) is not None]
        for stream in (False, True):
            tag = f"{kind}_stream" if stream else kind
            for server, model in serving:
                got = asyncio.run(one_by_one(server, model, upstream, singles, stream=stream))
                errors += count_failed([g["answer"] for g in got], tag, server)
                good = [g for g in got if g["answer"].ok]
                name = server.name
                _note(figures, name, f"{tag}_wall_ms", [g["answer"].wall for g in good], 1000)
                if stream:
                    firsts = [g["answer"].first_content for g in good]
                    _note(figures, name, f"{tag}_first_content_ms", firsts, 1000)
                    _note(figures, name, f"{tag}_content_chunks", [g["answer"].content_chunks for g in good])
                else:
                    _note(figures, name, f"{tag}_calls", [g["calls"] for g in good])
                    _note(figures, name, f"{tag}_rounds", [g["rounds"] for g in good])
                    beyond = [g["beyond_upstream"] for g in good]
                    _note(figures, name, f"{tag}_beyond_upstream_ms", beyond, 1000)
        # CPU per request: the process tree's CPU over a batch, less its idle CPU for as long
        for server, model in serving:
            assert server.proc is not None
            before = tree_cpu(server.proc.pid)
            answers, wall = asyncio.run(batch(server, model, CPU_REQUESTS, CPU_CONCURRENCY))
            used = tree_cpu(server.proc.pid) - before - server.idle_cpu_per_s * wall
            errors += count_failed(answers, f"{kind} cpu batch", server)
            ok = sum(a.ok for a in answers)
            _note(figures, server.name, f"{kind}_cpu_ms", [1000 * used / ok if ok else None])
        for server, model in serving:
            assert server.proc is not None
            before = tree_cpu(server.proc.pid)
            answers, wall = asyncio.run(
                batch(server, model, THROUGHPUT_CONCURRENCY * 6, THROUGHPUT_CONCURRENCY)
            )
            cores = (tree_cpu(server.proc.pid) - before) / wall  # the CPU share it got meanwhile
            errors += count_failed(answers, f"{kind} throughput", server)
            _note(figures, server.name, f"{kind}_throughput_rps", [sum(a.ok for a in answers) / wall])
            _note(figures, server.name, f"{kind}_throughput_cores", [cores])
    return errors


# -- the table -----------------------------------------------------------------------------------------


def medians(figures: Figures) -> dict[str, dict[str, float]]:
    return {s: {k: statistics.median(v) for k, v in f.items() if v} for s, f in figures.items()}


def _cell(m: dict[str, float], build: Callable[[dict[str, float]], str], needs: Sequence[str]) -> str:
    return build(m) if all(k in m for k in needs) else "n/a"


ROWS: list[tuple[str, Sequence[str], Callable[[dict[str, float]], str]]] = [
    (
        "one MoA request, wall",
        ("moa_wall_ms", "moa_calls", "moa_rounds", "moa_beyond_upstream_ms"),
        lambda m: (
            f"{m['moa_wall_ms']:.0f} ms ({m['moa_calls']:.0f} calls in {m['moa_rounds']:.0f} rounds; "
            f"{m['moa_beyond_upstream_ms']:.0f} ms beyond the upstream's)"
        ),
    ),
    (
        "streaming MoA, time to first content",
        ("moa_stream_first_content_ms", "moa_stream_content_chunks"),
        lambda m: (
            f"{m['moa_stream_first_content_ms']:.0f} ms ({m['moa_stream_content_chunks']:.0f} content "
            f"chunk{'s' if m['moa_stream_content_chunks'] != 1 else ''})"
        ),
    ),
    (
        "server CPU per request, direct / MoA",
        ("direct_cpu_ms",),
        lambda m: (
            f"{m['direct_cpu_ms']:.1f} / " + (f"{m['moa_cpu_ms']:.1f} ms" if "moa_cpu_ms" in m else "n/a")
        ),
    ),
    (
        f"throughput, MoA at concurrency {THROUGHPUT_CONCURRENCY}",
        ("moa_throughput_rps", "moa_throughput_cores"),
        lambda m: f"{m['moa_throughput_rps']:.1f} req/s ({m['moa_throughput_cores']:.2f} cores busy)",
    ),
    (
        "one direct request, wall",
        ("direct_wall_ms", "direct_beyond_upstream_ms"),
        lambda m: (
            f"{m['direct_wall_ms']:.0f} ms ({m['direct_beyond_upstream_ms']:.0f} ms beyond the upstream's)"
        ),
    ),
    (
        "streaming direct, time to first content",
        ("direct_stream_first_content_ms", "direct_stream_content_chunks"),
        lambda m: (
            f"{m['direct_stream_first_content_ms']:.0f} ms "
            f"({m['direct_stream_content_chunks']:.0f} content chunk"
            f"{'s' if m['direct_stream_content_chunks'] != 1 else ''})"
        ),
    ),
    (
        f"throughput, direct at concurrency {THROUGHPUT_CONCURRENCY}",
        ("direct_throughput_rps", "direct_throughput_cores"),
        lambda m: f"{m['direct_throughput_rps']:.1f} req/s ({m['direct_throughput_cores']:.2f} cores busy)",
    ),
]


def table(med: dict[str, dict[str, float]], columns: Sequence[str], delay: float) -> list[str]:
    """The markdown table: one row per figure, one column per server ('not installed' where a
    server did not run)."""
    lines = [
        f"| same upstream, {delay * 1000:.0f} ms per call | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for label, needs, build in ROWS:
        cells = [_cell(med[c], build, needs) if c in med else "not installed" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


# -- main ----------------------------------------------------------------------------------------------


def find_optillm(given: str | None) -> str | None:
    if given:
        if not Path(given).is_file():
            raise SystemExit(f"--optillm {given}: no such file (the optillm command of its venv)")
        return given
    if Path(OPTILLM_DEFAULT).is_file():
        return OPTILLM_DEFAULT
    return shutil.which("optillm")


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delay", type=non_negative, default=0.3, help="upstream delay, seconds (0.3)")
    parser.add_argument("--rounds", type=positive, default=3, help="rounds over all servers (default 3)")
    parser.add_argument("--singles", type=positive, default=5, help="one-at-a-time requests per figure (5)")
    parser.add_argument("--optillm", help=f"the optillm command (default {OPTILLM_DEFAULT}, else PATH)")
    parser.add_argument(
        "--before", metavar="CHECKOUT", help="add a column: composite serve from this older checkout"
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave out the plain LiteLLM proxy")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--save", metavar="FILE", help="also write the figures as JSON to FILE")
    parser.add_argument("--upstream", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(int(args.upstream[0]), float(args.upstream[1]))
        return

    optillm = find_optillm(args.optillm)
    before_name = "composite before"
    if args.before:
        if not (Path(args.before) / "composite_cli").is_dir():
            raise SystemExit(f"--before {args.before}: no composite_cli package there")
        commit = subprocess.run(
            ["git", "-C", args.before, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        before_name = f"composite before ({commit or args.before})"
    if optillm is None:
        print(INSTALL, file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="peers-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSITE_", "OPTILLM_"))}
    env.update(
        LITELLM_MASTER_KEY=KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        OPENAI_API_KEY=UPSTREAM_KEY,  # optillm's key for the upstream
        HOME=str(work),
        XDG_CONFIG_HOME=str(work / ".config"),
    )
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    write_server_files(work, f"{upstream}/v1")
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[Server] = []
    load_before = load_average()
    try:
        procs.append(
            start(
                [sys.executable, __file__, "--upstream", str(up_port), str(args.delay)],
                env,
                work / "up.log",
                work,
            )
        )
        wait_http(f"{upstream}/calls", procs[-1], work / "up.log")
        launches: list[tuple[Server, list[str], str]] = []
        if optillm is not None:
            port = free_port()
            # a bearer token that does not start with "sk-": optillm then uses its configured
            # client instead of building a second one per request from the client's key
            optillm_server = Server(
                "optillm", f"http://127.0.0.1:{port}", "optillm-bench", {"direct": "fake", "moa": "moa-fake"}
            )
            argv = [optillm, "--base-url", f"{upstream}/v1"]
            argv += f"--host 127.0.0.1 --port {port} --log warning".split()
            launches.append((optillm_server, argv, "/health"))
        port = free_port()
        composite = Server("composite", f"http://127.0.0.1:{port}", KEY, {"direct": "direct", "moa": "moa"})
        argv = [sys.executable, str(work / "cli.py"), "serve", "--config", str(work / "composite.yaml")]
        argv += ["--db", str(work / "traces.db")]
        argv += f"--port {port} --modes direct,moa --log-level warning".split()
        launches.append((composite, argv, "/health/liveliness"))
        if args.before:
            port = free_port()
            before = Server(before_name, f"http://127.0.0.1:{port}", KEY, {"direct": "direct", "moa": "moa"})
            argv = [sys.executable, str(work / "cli.py"), "serve", "--config", str(work / "composite.yaml")]
            argv += ["--db", str(work / "traces-before.db")]
            argv += f"--port {port} --modes direct,moa --log-level warning".split()
            launches.append((before, argv, "/health/liveliness"))
        if not args.no_litellm:
            port = free_port()
            plain = Server(
                "plain LiteLLM proxy", f"http://127.0.0.1:{port}", KEY, {"direct": "fake", "moa": None}
            )
            argv = [str(bin_dir / "litellm"), "--config", str(work / "plain.yaml")]
            argv += f"--host 127.0.0.1 --port {port}".split()
            launches.append((plain, argv, "/health/liveliness"))
        for i, (server, argv, _) in enumerate(launches):
            own_env = env
            if server.name == before_name:  # the old checkout's composite_cli first on the path
                own_env = {
                    **env,
                    "PYTHONPATH": os.pathsep.join(filter(None, [args.before, env.get("PYTHONPATH")])),
                }
            server.proc = start(argv, own_env, work / f"server{i}.log", work)
            procs.append(server.proc)
        for i, (server, _, health) in enumerate(launches):
            assert server.proc is not None
            wait_http(f"{server.base}{health}", server.proc, work / f"server{i}.log")
            servers.append(server)
        # warm up (first requests pay lazy imports), then each server's idle CPU
        for server in servers:
            for model_name in server.models.values():
                if model_name is not None:
                    asyncio.run(batch(server, model_name, 16, 8))
                    asyncio.run(one_by_one(server, model_name, upstream, 2, stream=True))
        time.sleep(1)
        idle = {s.name: tree_cpu(s.proc.pid) for s in servers if s.proc is not None}
        idle_t0 = time.monotonic()
        time.sleep(5)
        idle_wall = time.monotonic() - idle_t0
        for s in servers:
            if s.proc is not None:
                s.idle_cpu_per_s = (tree_cpu(s.proc.pid) - idle[s.name]) / idle_wall

        figures: Figures = {}
        errors = 0
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds} (load {load_average()})", file=sys.stderr)
            errors += measure_round(servers, upstream, args.singles, figures)
    finally:
        for proc in reversed(procs):
            stop(proc)

    med = medians(figures)
    columns = ["optillm", "composite"] + ([before_name] if args.before else [])
    columns += [] if args.no_litellm else ["plain LiteLLM proxy"]
    result = {
        "upstream_delay_ms": args.delay * 1000,
        "rounds": args.rounds,
        "singles": args.singles,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "idle_cpu_ms_per_s": {s.name: 1000 * s.idle_cpu_per_s for s in servers},
        "errors": errors,
        "medians": med,
        "per_round": figures,
    }
    if args.save:
        Path(args.save).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"upstream {args.delay * 1000:.0f} ms per call; medians of {args.rounds} rounds; "
        f"load average {load_before} before, {result['load_average_after']} after; errors {errors}"
    )
    print("\n".join(table(med, columns, args.delay)))
    if optillm is None:
        print(INSTALL)


if __name__ == "__main__":
    main()
