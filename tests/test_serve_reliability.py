"""Reliability of `composite serve` over HTTP: load, one database shared by serve, eval and the TUI,
kill -9 under load, fuzzed and huge request bodies, and secrets.

Real server subprocesses on loopback ports (helpers from test_serve_e2e), LiteLLM mock models, so
nothing touches the network. Three servers start together (module fixture) to keep the wall time
down on two cores: `main` (fuzz, huge inputs, secrets, the shared-database test), `load` (two
workers, a fresh database for the 200-request load) and `kill` (killed with SIGKILL).

The heavy tests are marked `slow` (`pytest -m "not slow"` skips them); the whole file takes about
a minute. `python benchmarks/reliability.py` reproduces the load and fault figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_serve_e2e import Server, _env, free_port

from composite_cli.traces import queries
from composite_cli.traces.reader import TraceReader
from composite_cli.traces.store import TraceStore

MASTER = "sk-rel-master-5f1e0c9a7b3d4e2f8a6b"
PROFILE_KEY = "sk-rel-profile-7d3c2b1a0f9e8d7c6b5a"
HEADER_KEY = "sk-rel-header-0a1b2c3d4e5f6a7b8c9d"
BODY_KEY = "sk-rel-body-9f8e7d6c5b4a3f2e1d0c"
WRONG_KEY = "sk-rel-wrong-1234567890abcdefabcd"
SECRETS = (MASTER, PROFILE_KEY, HEADER_KEY, BODY_KEY, WRONG_KEY)
ANSWER = "Paris is the capital."
LOAD_REQUESTS = 200
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
COMPOSITE = str(Path(sys.executable).with_name("composite"))

slow = pytest.mark.slow


def _config() -> dict[str, Any]:
    mock = {"model": "openai/gpt-4o-mini", "mock_response": ANSWER}
    return {
        "profile": "mock",
        "profiles": {
            "mock": {"*": {**mock, "mock_delay": 0.02}},
            "load": {"*": {**mock, "mock_delay": 0.05}},
            "stuck": {"*": {**mock, "mock_delay": 120}},  # in flight until the kill
            "failing": {"*": {**mock, "mock_response": "litellm.InternalServerError"}},
            "faulty": {"*": {"model": "faulty/x", "fault_rate": 0.0, "answer": "from faulty"}},
            "keyed": {
                # every proposer fails (an error path through the server), the rest answers
                "fast": {**mock, "mock_response": "litellm.InternalServerError", "api_key": PROFILE_KEY},
                "*": {
                    **mock,
                    "api_key": PROFILE_KEY,
                    "extra_headers": {"Authorization": f"Bearer {HEADER_KEY}"},
                },
            },
        },
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-reliability")
    (root / "composite.yaml").write_text(yaml.safe_dump(_config()))
    # For `main`: a plain LiteLLM model beside the modes tells LiteLLM's own failures from
    # composite's; no proxy-level retries, so a request that fails is one run and fails fast
    # (by default the proxy runs a failed mode twice more: test_a_failed_request_is_one_run).
    plain = {"model": "openai/gpt-4o-mini", "mock_response": "plain answer"}
    user_config = {
        "model_list": [{"model_name": "plain-mock", "litellm_params": plain}],
        "router_settings": {"num_retries": 0},
    }
    (root / "litellm.yaml").write_text(yaml.safe_dump(user_config))
    return root


@pytest.fixture(scope="module")
def servers(root: Path) -> Iterator[dict[str, Server]]:
    cli = [COMPOSITE, "serve", "--config", str(root / "composite.yaml")]
    specs = {
        "main": (["--litellm-config", str(root / "litellm.yaml")], 1),
        "load": (["--profile", "load", "--modes", "moa,direct", "--workers", "2"], 2),
        "kill": (["--modes", "moa,direct"], 1),
    }
    started: dict[str, Server] = {}
    try:
        for name, (extra, workers) in specs.items():
            home = root / f"home-{name}"
            home.mkdir()
            env = {**_env(home), "LITELLM_MASTER_KEY": MASTER}  # the key from the environment
            port = free_port()
            argv = [*cli, "--port", str(port), "--db", str(root / f"{name}.db"), *extra]
            started[name] = Server(name, argv, root, env, port, workers=workers)
        yield started
    finally:
        for server in started.values():
            server.close()


@pytest.fixture(scope="module")
def main(servers: dict[str, Server]) -> Server:
    return servers["main"].wait_ready()


def db_path(server: Server) -> Path:
    return server.log_path.parent / f"{server.name}.db"


def headers(key: str = MASTER) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(server: Server, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers=headers(), timeout=HTTP_TIMEOUT, **kw
    )


def committed(server: Server, run_id: str) -> dict[str, Any]:
    """The run as the server reports it; the introspection API first commits the server's queued writes."""
    response = httpx.get(f"{server.url}/composite/traces/{run_id}", headers=headers(), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()["run"]


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("pragma integrity_check").fetchone()[0])
    finally:
        db.close()


def rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def user(text: str = "What is the capital of France?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- load: 200 concurrent requests, nothing lost or duplicated ---------------------------------------


@slow
def test_200_concurrent_requests_lose_and_duplicate_nothing(servers: dict[str, Server]):
    server = servers["load"].wait_ready()

    async def load() -> tuple[list[Any], float]:
        limits = httpx.Limits(max_connections=LOAD_REQUESTS, max_keepalive_connections=LOAD_REQUESTS)
        async with httpx.AsyncClient(limits=limits, timeout=HTTP_TIMEOUT) as http:
            sdk = openai.AsyncOpenAI(
                api_key=MASTER, base_url=f"{server.url}/v1", http_client=http, max_retries=0
            )

            async def one(i: int) -> Any:
                t0 = time.perf_counter()
                try:
                    raw = await sdk.chat.completions.with_raw_response.create(
                        model="moa", messages=user(f"What is the capital of France? ({i})")
                    )
                    content = raw.parse().choices[0].message.content
                    return raw.headers.get("x-composite-run-id"), content, time.perf_counter() - t0
                except Exception as exc:  # counted as an error below
                    return None, repr(exc), time.perf_counter() - t0

            t0 = time.perf_counter()
            results = await asyncio.gather(*(one(i) for i in range(LOAD_REQUESTS)))
            return results, time.perf_counter() - t0

    results, wall = asyncio.run(asyncio.wait_for(load(), timeout=180))
    errors = [r for r in results if r[0] is None or r[1] != ANSWER]
    latencies = [r[2] * 1000 for r in results]
    print(
        f"\n{LOAD_REQUESTS} concurrent moa-v1 requests through serve (2 workers, mock models 50 ms): "
        f"{LOAD_REQUESTS / wall:.1f} req/s, p50 {percentile(latencies, 0.5):.0f} ms, "
        f"p95 {percentile(latencies, 0.95):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms, "
        f"errors {len(errors)}"
    )
    assert errors == [], errors[:3]
    ids = [r[0] for r in results]
    assert len(set(ids)) == LOAD_REQUESTS  # every request its own run id

    assert server.stop() == 0  # SIGTERM: both workers drain and commit their traces
    path = db_path(server)
    assert integrity(path) == "ok"
    stored = rows(path, "select id, source, status, mode, calls from runs where source = 'serve'")
    by_id = Counter(r[0] for r in stored)
    assert len(stored) == LOAD_REQUESTS  # nothing lost, nothing extra
    assert not [i for i, n in by_id.items() if n > 1]  # nothing duplicated
    assert set(by_id) == set(ids)  # every response's run id is one row
    assert {(r[1], r[2], r[3], r[4]) for r in stored} == {("serve", "ok", "moa-v1", 4)}
    print(f"runs written by {len(rows(path, 'select distinct pid from runs'))} worker processes")


# -- serve, eval and the TUI on one database at once ------------------------------------------------


def tui_reader(path: Path, stop: threading.Event, errors: list[str], loops: Counter[str]) -> None:
    """What the TUI does while others write: change checks, run lists, a run's tree, evals, the dashboard."""
    from composite_cli.evals.report import build_report

    store = TraceStore(path)  # never opened for writing: reads only
    watcher = queries.ChangeWatcher(path)
    try:
        while not stop.is_set():
            try:
                watcher.token()
                reader = TraceReader(store)
                runs = reader.runs(limit=50, brief=True)
                reader.runs(source="serve", status="ok", limit=20, brief=True)
                reader.filter_values()
                if runs:
                    reader.trace(runs[0]["id"])
                for eval_run in reader.eval_runs()[:1]:
                    if eval_run["results"]:
                        build_report(store, eval_run["id"])
                queries.dashboard(store, "1h")
                loops["ok"] += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)
    finally:
        watcher.close()


@slow
def test_serve_eval_and_tui_share_one_database(main: Server, root: Path):
    path = db_path(main)
    cases = [
        {"id": f"c{i:02d}", "input": f"Capital of France? ({i})", "expected": "Paris", "scorer": "contains"}
        for i in range(60)
    ]
    eval_file = root / "shared.jsonl"
    eval_file.write_text("".join(json.dumps(c) + "\n" for c in cases))
    committed(main, chat(main, {"model": "direct", "messages": user()}).headers["x-composite-run-id"])
    log_start = len(main.log())

    stop, errors, loops = threading.Event(), [], Counter()
    reader = threading.Thread(target=tui_reader, args=(path, stop, errors, loops), daemon=True)
    reader.start()
    eval_err = root / "eval.stderr"
    with open(eval_err, "wb") as err:
        proc = subprocess.Popen(
            [
                COMPOSITE,
                "eval",
                str(eval_file),
                "-m",
                "moa",
                "-c",
                "4",
                "--no-cache",
                "--json",
                "--config",
                str(root / "composite.yaml"),
                "--db",
                str(path),
            ],
            cwd=root,
            env=_env(root / "home-main"),
            stdout=subprocess.PIPE,
            stderr=err,
        )
    served: list[httpx.Response] = []
    try:

        async def serve_load() -> None:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, headers=headers()) as http:

                async def one(i: int) -> httpx.Response:
                    body = {"model": "moa" if i % 2 else "direct", "messages": user(f"serve {i}")}
                    return await http.post(f"{main.url}/v1/chat/completions", json=body)

                deadline = time.monotonic() + 120
                # keep 8 requests in flight until the eval is done (at least 40 in all)
                while (proc.poll() is None or len(served) < 40) and time.monotonic() < deadline:
                    served.extend(await asyncio.gather(*(one(len(served) + i) for i in range(8))))

        started = time.monotonic()
        while not rows(path, "select 1 from eval_results limit 1") and time.monotonic() - started < 60:
            time.sleep(0.02)  # the eval's cases are running
        asyncio.run(serve_load())
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        stop.set()
        reader.join(timeout=30)

    stderr = eval_err.read_text(errors="replace")
    assert proc.returncode == 0, stderr[-3000:]
    assert "locked" not in stderr.lower()
    assert "locked" not in main.log()[log_start:].lower()
    assert errors == [], errors[:5]
    assert loops["ok"] > 10  # the reader really ran alongside
    assert [r.status_code for r in served] == [200] * len(served)
    run_ids = [r.headers["x-composite-run-id"] for r in served]
    committed(main, run_ids[-1])
    runs = {r[0]: r[1:] for r in rows(path, "select id, source, status, created_at from runs")}
    assert [runs[i][:2] for i in run_ids if i in runs] == [("serve", "ok")] * len(run_ids)  # all there
    eval_run_id = json.loads(stdout)["eval_run"]["id"]
    results = rows(path, "select case_id, run_id from eval_results where eval_run_id = ?", (eval_run_id,))
    assert sorted(r[0] for r in results) == [c["id"] for c in cases]  # every case, once
    assert [runs[r[1]][:2] for r in results] == [("eval", "ok")] * len(cases)
    first, last = min(runs[r[1]][2] for r in results), max(runs[r[1]][2] for r in results)
    overlapping = sum(1 for i in run_ids if first <= runs[i][2] <= last)
    assert overlapping >= 8, "serve and eval did not write at the same time"
    assert integrity(path) == "ok"
    print(
        f"\nshared database: {len(served)} serve requests ({overlapping} while the eval ran), "
        f"{len(cases)} eval cases, {loops['ok']} TUI read loops"
    )


# -- issues these tests found (fixed; kept as regression tests) -----------------------------


def test_a_failed_request_is_one_run(servers: dict[str, Server]):
    server = servers["kill"].wait_ready()  # the proxy's default router settings
    path = db_path(server)
    before = {r[0] for r in rows(path, "select id from runs")}
    response = chat(server, {"model": "direct", "messages": user(), "composite": {"profile": "failing"}})
    assert response.status_code == 500, response.text[:300]
    committed(server, response.headers["x-composite-run-id"])
    new = {r[0] for r in rows(path, "select id from runs")} - before
    assert len(new) == 1, f"{len(new)} runs for one request"


def test_the_fault_injection_provider_works_under_serve(main: Server):
    response = chat(main, {"model": "direct", "messages": user(), "composite": {"profile": "faulty"}})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["message"]["content"] == "from faulty"


# -- kill -9 under load ------------------------------------------------------------------------------


@slow
def test_kill_9_under_load_leaves_a_clean_database_with_interrupted_runs_marked(servers: dict[str, Server]):
    server = servers["kill"].wait_ready()
    path = db_path(server)
    earlier = {r[0] for r in rows(path, "select id from runs")}
    finished = [chat(server, {"model": "moa", "messages": user(f"fast {i}")}) for i in range(6)]
    assert [r.status_code for r in finished] == [200] * 6
    finished_ids = [r.headers["x-composite-run-id"] for r in finished]
    committed(server, finished_ids[-1])

    in_flight = 8

    def stuck(i: int) -> httpx.Response | Exception:
        body = {"model": "moa" if i % 2 else "direct", "messages": user(f"stuck {i}")}
        body["composite"] = {"profile": "stuck"}
        try:
            return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers(), timeout=30)
        except httpx.HTTPError as exc:
            return exc

    with ThreadPoolExecutor(in_flight) as pool:
        futures = [pool.submit(stuck, i) for i in range(in_flight)]
        deadline = time.monotonic() + 30
        running: list[str] = []
        while len(running) < in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
            running = [r[0] for r in rows(path, "select id from runs where status = 'running'")]
        assert len(running) == in_flight, "the requests never got in flight"
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        outcomes = [f.result(timeout=40) for f in futures]
    assert all(isinstance(o, Exception) for o in outcomes)  # the clients saw the connection drop

    assert integrity(path) == "ok"  # opens cleanly right after the kill
    assert Counter(r[0] for r in rows(path, "select status from runs"))["running"] == in_flight
    TraceStore(path).open().close()  # what any next composite process does at start-up
    assert integrity(path) == "ok"
    runs = {r[0]: r[1:] for r in rows(path, "select id, status, error from runs") if r[0] not in earlier}
    assert set(runs) == {*finished_ids, *running}
    assert [runs[i][0] for i in finished_ids] == ["ok"] * len(finished_ids)
    for run_id in running:
        status, error = runs[run_id]
        assert status == "error" and error.startswith("interrupted:"), (status, error)
    assert rows(path, "select count(*) from steps where status = 'running'") == [(0,)]
    interrupted = Counter(r[0] for r in rows(path, "select run_id from steps where error = 'interrupted'"))
    assert set(interrupted) == set(running)  # each in-flight run's open steps, and only theirs


def descendants(pid: int) -> set[int]:
    """Every live process under `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def port_is_free(port: int) -> bool:
    """Whether a new server could bind the port now (uvicorn binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_workers_die_with_a_killed_supervisor_and_the_port_can_be_bound_again(root: Path):
    """Finding 6 of issue 12: `serve --workers 2` survived kill -9 of its main process."""
    port = free_port()
    argv = [COMPOSITE, "serve", "--profile", "dry", "--workers", "2", "--port", str(port)]
    home = root / "home-lifeline"
    home.mkdir()
    env = {**_env(home), "LITELLM_MASTER_KEY": MASTER}
    first = Server("lifeline-1", [*argv, "--db", str(root / "lifeline.db")], root, env, port, workers=2)
    try:
        first.wait_ready()
        workers = descendants(first.proc.pid)
        assert len(workers) >= 2, workers
        first.proc.kill()  # SIGKILL to the supervisor alone, not its process group
        first.proc.wait(timeout=10)
        deadline = time.monotonic() + 60  # a bounded wait, not a timing assertion
        while (any(alive(p) for p in workers) or not port_is_free(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if alive(p)], "workers outlived their supervisor"
        assert port_is_free(port)
    finally:
        first.close()  # kills whatever is left in the group, so a failure leaves nothing behind
    second = Server("lifeline-2", [*argv, "--db", str(root / "lifeline.db")], root, env, port, workers=2)
    try:
        second.wait_ready()
        health = httpx.get(f"{second.url}/health", headers=headers(), timeout=HTTP_TIMEOUT)
        assert health.status_code == 200, health.text[:300]
    finally:
        second.close()


# -- fuzzed request bodies ----------------------------------------------------------------------------

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same bodies every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Mostly near-valid bodies (repeats weigh the choices), with every field now and then wrong.
ROLES = ["user"] * 4 + ["assistant", "system", "tool", "developer", "function", "wizard", "", "USER"]
MODELS = ["direct", "direct", "moa", "composite/direct", "composite/moa-v1"]

texts = st.text(max_size=60) | st.sampled_from(["", " ", "\x00", "🧠" * 10, "\u202e\u200b", "null"])
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3),
    max_leaves=8,
)
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "text", "image_url", "input_audio", "bogus", ""])},
    optional={"text": texts | json_scalars, "image_url": st.just({"url": "data:image/png;base64,AAAA"})},
)
contents = st.one_of(
    texts,
    texts,
    st.none(),
    st.lists(parts, max_size=3),
    json_scalars,
    json_values,
    st.builds(lambda n: "x" * n, st.integers(0, 300_000)),  # sizes
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": texts,
            "type": st.sampled_from(["function", "bogus"]),
            "function": st.fixed_dictionaries(
                {}, optional={"name": texts, "arguments": texts | st.just('{"city": "Paris"}')}
            ),
        },
    ),
    max_size=2,
)
message_extras = {"name": texts, "tool_calls": tool_calls, "tool_call_id": texts}
messages = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": contents}),
    st.fixed_dictionaries(
        {}, optional={"role": st.sampled_from(ROLES), "content": contents, **message_extras}
    ),
)
tools = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True)},
                    optional={"parameters": json_values, "description": texts},
                ),
            }
        ),
        json_values,
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "messages": st.lists(messages, min_size=1, max_size=6) | json_values},
    optional={
        "tools": tools,
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "x"}}]
        ),
        "max_tokens": st.integers(-5, 10_000),
        "temperature": st.floats(-1, 3),
        "stream": st.booleans(),
        "n": st.integers(0, 3),
        "stop": texts | st.lists(texts, max_size=2),
        "user": texts,
        "composite": st.fixed_dictionaries(
            {}, optional={"profile": st.sampled_from(["mock", "nope"]), "params": json_values}
        )
        | json_values,
    },
)


def is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def assert_clear_outcome(response: httpx.Response, stream: bool) -> None:
    """200 with a well-formed answer, or 4xx with an OpenAI-style error message."""
    if response.status_code == 200:
        if stream:
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            assert events and events[-1] == "[DONE]", response.text[:500]
            assert all(is_json_object(e) for e in events[:-1]), response.text[:500]
        else:
            assert "choices" in response.json(), response.text[:500]
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:1000])
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"].strip(), response.text[:500]
    if "Traceback (most recent call last)" in error["message"]:
        event("4xx whose message holds a Python traceback")  # LiteLLM's "Invalid request format"


@slow
@FUZZ
@given(body=bodies)
def test_fuzzed_bodies_get_an_answer_or_a_clear_4xx(main: Server, body: dict[str, Any]):
    response = chat(main, body)
    event(f"status {response.status_code}")
    # Never a 5xx for a bad body: the edge answers what LiteLLM would mishandle (see body_check).
    assert_clear_outcome(response, stream=body.get("stream") is True)
    if response.status_code == 200:
        assert response.headers.get("x-composite-run-id")


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    None,
]
VALID = json.dumps({"model": "direct", "messages": user()}).encode()


def raw_body(data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["binary", "text", "mangled", "json-not-object", "deep"]))
    if kind == "binary":
        return data.draw(st.binary(max_size=300))
    if kind == "text":
        return data.draw(st.text(max_size=200)).encode()
    if kind == "json-not-object":
        return json.dumps(data.draw(json_values)).encode()
    if kind == "deep":
        return b"[" * data.draw(st.integers(1, 200_000))
    cut = data.draw(st.integers(0, len(VALID)))  # a valid body with a few bytes replaced
    return VALID[:cut] + data.draw(st.binary(max_size=8)) + VALID[cut + data.draw(st.integers(0, 4)) :]


@slow
@FUZZ
@given(data=st.data())
def test_raw_bodies_and_content_types_get_a_clear_4xx(main: Server, data: st.DataObject):
    body = raw_body(data)
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    extra = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(
        f"{main.url}/v1/chat/completions", content=body, headers={**headers(), **extra}, timeout=HTTP_TIMEOUT
    )
    event(f"status {response.status_code}")
    assert_clear_outcome(response, stream=False)  # a valid body read as JSON may well answer


# What the fuzz above found, pinned: LiteLLM checks and rewrites `messages` before it calls any
# provider, so a bad shape never reaches composite. One check of the body at composite's edge
# (serve/edge.py: for POST .../chat/completions, `messages` a non-empty list of objects, each
# `content` a string, null or a list of objects with a string `type`; `stream` a boolean), answering
# 400 with a one-line OpenAI-style error, fixes all three. Each turns into XPASS (a failure) once fixed.


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": 5}],
        [{"role": "user", "content": True}],
        [{"role": "user", "content": [{"type": "bogus"}]}],
        5,
    ],
    ids=["int-content", "bool-content", "unknown-part", "int-messages"],
)
def test_litellm_500s_for_bad_shapes(main: Server, messages: Any):
    response = chat(main, {"model": "direct", "messages": messages})
    assert 400 <= response.status_code < 500, response.text[:300]


@pytest.mark.parametrize("messages", [["hi"], [[1]], "hi"], ids=["strings", "lists", "string"])
def test_a_malformed_messages_list_gets_a_short_4xx(main: Server, messages: Any):
    response = chat(main, {"model": "direct", "messages": messages})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "Traceback" not in message and len(message) < 500, message[:300]


@pytest.mark.parametrize("stream", ["yes", 1])
def test_a_non_boolean_stream_is_refused(main: Server, stream: Any):
    response = chat(main, {"model": "direct", "messages": user(), "stream": stream})
    assert_clear_outcome(response, stream=True)


# -- huge inputs ---------------------------------------------------------------------------------------


def test_huge_inputs_over_http_are_refused_or_kept_within_limits(main: Server):
    big = chat(main, {"model": "direct", "messages": user("x" * 10_000_000)})
    assert big.status_code == 200 and big.json()["choices"][0]["message"]["content"] == ANSWER
    run_id = big.headers["x-composite-run-id"]
    committed(main, run_id)
    stored = rows(db_path(main), "select length(input) from runs where id = ?", (run_id,))[0][0]
    assert stored < 1_000_000  # clipped in the trace, not stored whole

    many = chat(main, {"model": "direct", "messages": user() * 10_000})
    assert many.status_code == 400 and "too many messages: 10000" in many.json()["error"]["message"]
    assert chat(main, {"model": "direct", "messages": user() * 4096}).status_code == 200

    too_long = chat(main, {"model": "direct", "messages": user("y" * 17_000_000)})
    assert too_long.status_code == 400 and "limit is" in too_long.json()["error"]["message"]

    deep = "[" * 5000 + "]" * 5000
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": ' + deep + "}"}}
    nested = [*user(), {"role": "assistant", "content": None, "tool_calls": [call]}]
    nested.append({"role": "tool", "tool_call_id": "c1", "content": "done"})
    refused = chat(main, {"model": "moa", "messages": nested})
    assert refused.status_code == 400 and "nested too deeply" in refused.json()["error"]["message"]
    just_under = json.dumps(json.loads("[" * 60 + "]" * 60))
    call["function"]["arguments"] = '{"a": ' + just_under + "}"
    assert chat(main, {"model": "direct", "messages": nested}).status_code == 200

    deep_body = b'{"model": "direct", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = httpx.post(
        f"{main.url}/v1/chat/completions",
        content=deep_body,
        headers={**headers(), "Content-Type": "application/json"},
        timeout=HTTP_TIMEOUT,
    )
    assert 400 <= response.status_code < 500


# -- secrets ---------------------------------------------------------------------------------------------


def test_secrets_reach_no_trace_log_or_export(main: Server):
    keyed = {"composite": {"profile": "keyed"}}
    answered = chat(main, {"model": "direct", "messages": user(), **keyed, "api_key": BODY_KEY})
    assert answered.status_code == 200, answered.text
    failed = chat(main, {"model": "moa", "messages": user(), **keyed})  # every proposer fails
    assert failed.status_code >= 400
    streamed = chat(main, {"model": "direct", "messages": user(), "stream": True, **keyed})
    assert streamed.status_code == 200
    via_header = httpx.post(
        f"{main.url}/v1/chat/completions",
        json={"model": "direct", "messages": user(), **keyed},
        headers={"x-api-key": MASTER},
        timeout=HTTP_TIMEOUT,
    )
    assert via_header.status_code == 200
    wrong = httpx.post(
        f"{main.url}/v1/chat/completions",
        json={"model": "direct", "messages": user()},
        headers=headers(WRONG_KEY),
    )
    assert wrong.status_code == 401 and WRONG_KEY not in wrong.text
    for response in (answered, failed, streamed, via_header):
        assert not any(secret in response.text for secret in SECRETS)
    committed(main, answered.headers["x-composite-run-id"])  # every queued write is on disk

    path = db_path(main)
    db = sqlite3.connect(path)
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    raw = b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))
    exported = subprocess.run(
        [COMPOSITE, "traces", "export", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(path.parent / "home-main"),
    )
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout.splitlines()[0])["id"]
    for secret in SECRETS:
        assert secret not in dump
        assert secret.encode() not in raw
        assert secret not in main.log()
        assert secret not in exported.stdout and secret not in exported.stderr
    assert "[REDACTED]" in dump  # the profile's key was there, masked
