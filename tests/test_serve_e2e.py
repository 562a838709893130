"""`composite serve` end to end: real server subprocesses on loopback, called with the official
`openai` SDK (and httpx for what the SDK will not send). Models are LiteLLM mocks, plus a fake
OpenAI-compatible upstream in this process that streams slowly, so nothing touches the network.

The servers start together (module fixture) to keep the wall time down on two cores: the main
server (one worker), a two-worker server, a server for the SIGTERM test (with a generated key),
and a plain `litellm --config` proxy loading the `--print-config` snippet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

MASTER = "sk-e2e-master-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-secret-0123456789abcdef"
ANSWER = "Paris is the capital."
CHUNKS = 8
CHUNK_DELAY = 0.15
UPSTREAM_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# The CLI with `serve` mounted (until composite_cli/cli/main.py mounts it itself).
SCRIPT = """
from composite_cli.cli.main import app

if not any(c.name == "serve" for c in app.registered_commands):
    from composite_cli.cli.serve import serve

    app.command("serve")(serve)

if __name__ == "__main__":
    app()
"""
START_TIMEOUT = 300.0  # four servers start at once; on a loaded 2-core machine that takes a while
# While HOLD is set, the upstream holds its stream after the first chunk until RELEASE is set: a
# test can then see that the first token reached the client before the rest existed.
HOLD = threading.Event()
RELEASE = threading.Event()


# -- a fake OpenAI-compatible upstream that streams slowly ----------------------------------------


def _upstream_app() -> Any:
    """`/v1/chat/completions`: a short answer at once, or (streamed) CHUNKS words CHUNK_DELAY apart.
    Model `fake-tools` asks for get_weather(city="Paris") while the conversation has no tool result."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "fake-upstream",
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    def delta(finish: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": fields, "finish_reason": finish}]

    async def chat(request: Request) -> Any:
        body = await request.json()
        wants_tool = (
            body["model"] == "fake-tools" and body.get("tools") and body["messages"][-1]["role"] != "tool"
        )
        if not body.get("stream"):
            await asyncio.sleep(0.02)
            message: dict[str, Any] = {"role": "assistant", "content": "a proposal"}
            if wants_tool:
                message = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
            return JSONResponse(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": "fake-upstream",
                    "usage": UPSTREAM_USAGE,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if wants_tool else "stop",
                        }
                    ],
                }
            )

        async def events() -> Any:
            if wants_tool:
                head = {**TOOL_CALL, "index": 0, "function": {"name": "get_weather", "arguments": ""}}
                yield event(delta(role="assistant", tool_calls=[head]))
                for part in ('{"city": ', '"Paris"}'):
                    await asyncio.sleep(0.01)
                    yield event(delta(tool_calls=[{"index": 0, "function": {"arguments": part}}]))
                yield event(delta("tool_calls"))
            else:
                for i in range(CHUNKS):
                    if i:
                        await asyncio.sleep(CHUNK_DELAY)
                    while i == 1 and HOLD.is_set() and not RELEASE.is_set():
                        await asyncio.sleep(0.01)
                    yield event(delta(**({"role": "assistant"} if i == 0 else {}), content=f"w{i} "))
                yield event(delta("stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                yield event([], usage=UPSTREAM_USAGE)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_upstream_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the fake upstream did not start"
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- server processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess with its log file; cleaned up by `close()` whatever happened."""

    def __init__(
        self, name: str, argv: list[str], cwd: Path, env: dict[str, str], port: int, workers: int = 1
    ):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workers = workers
        self.log_path = cwd / f"{name}.log"
        self._log = open(self.log_path, "wb")  # closed in close()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._ready = False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Server:
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not start in {timeout:.0f}s:\n{self.log()[-3000:]}")
            started = self.log().count("Application startup complete")
            if started >= self.workers:
                try:
                    self._ready = httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200
                except httpx.HTTPError:
                    pass
            if not self._ready:
                time.sleep(0.25)
        return self

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the process to exit; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group: uvicorn's worker processes too
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self._log.close()


@contextlib.contextmanager
def serve_and_proxy(
    root: Path, master: str, env: dict[str, str], serve_args: list[str]
) -> Iterator[dict[str, Server]]:
    """`composite serve` and a plain `litellm --config` proxy loading its `--print-config` snippet
    (modes moa and direct), each with its own home and trace database under `root`; `env` is added
    to both (the profile or config), `serve_args` to `composite serve`. Closed whatever happened."""
    bin_dir = Path(sys.executable).parent
    snippet = root / "snippet.yaml"
    with open(snippet, "wb") as out:
        subprocess.run(
            [str(bin_dir / "composite"), "serve", "--print-config", "--modes", "moa,direct"],
            stdout=out,
            check=True,
        )
    started: dict[str, Server] = {}
    try:
        for name in ("serve", "proxy"):
            home = root / f"home-{name}"
            home.mkdir()
            full, port = _env(home), free_port()
            full.update(env, LITELLM_MASTER_KEY=master)
            if name == "serve":
                argv = [str(bin_dir / "composite"), "serve", *serve_args, "--modes", "moa,direct",
                        "--port", str(port), "--db", str(root / "serve.db")]  # fmt: skip
            else:
                full["COMPOSITE_DB"] = str(root / "proxy.db")
                argv = [
                    str(bin_dir / "litellm"),
                    "--config",
                    str(snippet),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ]
            started[name] = Server(name, argv, root, full, port)
        yield started
    finally:
        for server in started.values():
            server.close()


@contextlib.contextmanager
def serve_on_mock(
    root: Path, modes: list[str], mock: dict[str, Any], name: str = "serve"
) -> Iterator[Server]:
    """`composite serve` of `modes` (ready, master key MASTER) on one profile whose every alias is the
    LiteLLM mock `mock` (e.g. {"model": "openai/gpt-4o-mini", "mock_response": "..."}), with its own
    home and trace database under `root`. Closed whatever happened."""
    config = root / f"{name}-composite.yaml"
    config.write_text(json.dumps({"profile": "mock", "profiles": {"mock": {"*": mock}}}), encoding="utf-8")
    home = root / f"{name}-home"
    home.mkdir()
    port = free_port()
    argv = [str(Path(sys.executable).parent / "composite"), "serve", "--config", str(config),
            "--port", str(port), "--modes", ",".join(modes), "--db", str(root / f"{name}.db")]  # fmt: skip
    server = Server(name, argv, root, {**_env(home), "LITELLM_MASTER_KEY": MASTER}, port)
    try:
        yield server.wait_ready()
    finally:
        server.close()


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_") and k != "LITELLM_MASTER_KEY"
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        PYTHONUNBUFFERED="1",
    )
    return env


def _composite_config(upstream: str) -> dict[str, Any]:
    mock = {"model": "openai/gpt-4o-mini", "mock_response": ANSWER, "mock_delay": 0.05}
    fake = {"api_base": upstream, "api_key": UPSTREAM_KEY}
    return {
        "profile": "mock",
        "profiles": {
            "mock": {"*": mock},
            # the final step (alias `strong` in moa-v1 and direct) asks for the client's tool
            # (LiteLLM's mock_tool_calls does not stream, so a fake upstream plays that model)
            "tools": {"*": mock, "strong": {"model": "openai/fake-tools", **fake}},
            "stream": {"*": {"model": "openai/fake-upstream", **fake}},
            "slow": {"*": {**mock, "mock_response": "slow answer", "mock_delay": 1.0}},
            "busy": {"*": {**mock, "mock_delay": 0.3}},
        },
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, upstream: str) -> Iterator[dict[str, Server]]:
    import typer
    from typer.testing import CliRunner

    from composite_cli.cli.serve import serve

    root = tmp_path_factory.mktemp("serve")
    (root / "composite.yaml").write_text(yaml.safe_dump(_composite_config(upstream)))
    # the user's own LiteLLM config, merged in: a plain model beside the modes
    plain_model = {"model": "openai/gpt-4o-mini", "mock_response": "plain answer"}
    (root / "litellm.yaml").write_text(
        yaml.safe_dump({"model_list": [{"model_name": "plain-mock", "litellm_params": plain_model}]})
    )
    script = root / "composite_cli_with_serve.py"
    script.write_text(SCRIPT)
    cli = [sys.executable, str(script), "serve", "--config", str(root / "composite.yaml")]

    # the --print-config snippet, for a plain LiteLLM proxy
    local_cli = typer.Typer()
    local_cli.command("serve")(serve)
    local_cli.command("noop")(lambda: None)
    printed = CliRunner().invoke(local_cli, ["serve", "--print-config", "--modes", "moa,direct"])
    assert printed.exit_code == 0, printed.output
    (root / "litellm-snippet.yaml").write_text(printed.output)

    started: dict[str, Server] = {}
    try:
        for name in ("main", "workers", "shutdown", "plain"):
            home = root / f"home-{name}"
            home.mkdir()
            env, port = _env(home), free_port()
            if name == "main":
                argv = [*cli, "--port", str(port), "--master-key", MASTER, "--db", str(root / "main.db"),
                        "--litellm-config", str(root / "litellm.yaml")]  # fmt: skip
            elif name == "workers":
                env["LITELLM_MASTER_KEY"] = MASTER
                argv = [
                    *cli,
                    "--port",
                    str(port),
                    "--workers",
                    "2",
                    "--modes",
                    "moa,direct",
                    "--profile",
                    "busy",
                    "--db",
                    str(root / "workers.db"),
                ]
            elif name == "shutdown":
                argv = [*cli, "--port", str(port), "--db", str(root / "shutdown.db"), "--grace", "20"]
            else:
                env.update(
                    LITELLM_MASTER_KEY=MASTER,
                    COMPOSITE_CONFIG=str(root / "composite.yaml"),
                    COMPOSITE_DB=str(root / "plain.db"),
                )
                litellm = str(Path(sys.executable).parent / "litellm")
                argv = [
                    litellm,
                    "--config",
                    str(root / "litellm-snippet.yaml"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ]
            started[name] = Server(name, argv, root, env, port, workers=2 if name == "workers" else 1)
        yield started
    finally:
        for server in started.values():
            server.close()


@pytest.fixture(scope="module")
def main(servers: dict[str, Server]) -> Server:
    return servers["main"].wait_ready()


def client(server: Server, key: str = MASTER, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", timeout=30, max_retries=0, **kw)


def get(server: Server, path: str, key: str | None = MASTER) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=30)


def trace(server: Server, run_id: str) -> dict[str, Any]:
    response = get(server, f"/composite/traces/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


def hi(text: str = "What is the capital of France?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- the main server ------------------------------------------------------------------------------


def test_models_lists_every_mode_and_alias(main: Server):
    ids = {m.id for m in client(main).models.list()}
    assert {
        "composite/moa-v1",
        "moa-v1",
        "moa",
        "composite/direct",
        "direct",
        "composite/reflect-v1",
        "reflect",
    } <= ids


def test_start_up_prints_no_proxy_warning(main: Server):
    """A newcomer's first `composite serve` shows no warning they could act on.

    (LiteLLM's proxy logs "gc.freeze pinned N startup objects" as a warning at every start,
    unconditionally: that one is informational.)"""
    start = main.log().split("Application startup complete")[0]
    warnings = [line for line in start.splitlines() if "WARNING" in line and "gc.freeze pinned" not in line]
    assert warnings == []


def test_a_users_litellm_models_sit_beside_the_modes(main: Server):
    assert "plain-mock" in {m.id for m in client(main).models.list()}
    raw = client(main).chat.completions.with_raw_response.create(model="plain-mock", messages=hi())
    assert raw.parse().choices[0].message.content == "plain answer"
    assert "x-composite-run-id" not in raw.headers  # not a composite run


def test_chat_answers_and_names_its_run(main: Server):
    raw = client(main).chat.completions.with_raw_response.create(model="moa", messages=hi())
    run_id = raw.headers["x-composite-run-id"]
    completion = raw.parse()
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    body = trace(main, run_id)
    run = body["run"]
    assert (run["id"], run["source"], run["mode"], run["status"], run["calls"]) == (
        run_id,
        "serve",
        "moa-v1",
        "ok",
        4,
    )
    assert completion.usage.prompt_tokens == run["prompt_tokens"]
    assert completion.usage.completion_tokens == run["completion_tokens"]
    fanout, _, answer = body["steps"]
    assert fanout["kind"] == "fanout" and [c["kind"] for c in fanout["children"]] == ["llm"] * 3
    assert answer["kind"] == "synthesize" and answer["children"][0]["model"] == "openai/gpt-4o-mini"


def test_streaming_sends_the_final_steps_tokens_as_they_arrive(main: Server):
    HOLD.set()
    RELEASE.clear()
    watchdog = threading.Timer(120, RELEASE.set)  # a buffering server gets its rest after all
    watchdog.start()
    try:
        raw = client(main).chat.completions.with_raw_response.create(
            model="moa",
            messages=hi(),
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"composite": {"profile": "stream"}},
        )
        run_id = raw.headers["x-composite-run-id"]  # in the headers, before the first token
        pieces, first_while_held, usage = [], None, None
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                if first_while_held is None:
                    first_while_held = not RELEASE.is_set()
                    RELEASE.set()
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage
    finally:
        HOLD.clear()
        RELEASE.set()
        watchdog.cancel()
    assert "".join(pieces) == "".join(f"w{i} " for i in range(CHUNKS))
    assert len(pieces) >= CHUNKS // 2  # streamed in pieces, not one chunk at the end
    run = trace(main, run_id)["run"]
    # The first token reached the client while the upstream still held back the rest.
    assert first_while_held is True
    # usage (summed over every internal call) arrives in the last chunk
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (run["prompt_tokens"], run["completion_tokens"])
    assert usage.prompt_tokens == 4 * UPSTREAM_USAGE["prompt_tokens"]


def _tool_turn(main: Server, stream: bool) -> tuple[str | None, list[dict[str, Any]]]:
    kw: dict[str, Any] = {"model": "moa", "messages": hi("Weather in Paris?"), "tools": [WEATHER_TOOL]}
    kw["extra_body"] = {"composite": {"profile": "tools"}}
    if not stream:
        choice = client(main).chat.completions.create(**kw).choices[0]
        calls = [c.model_dump() for c in choice.message.tool_calls or []]
        return choice.finish_reason, calls
    finish, calls = None, {}
    for chunk in client(main).chat.completions.create(**kw, stream=True):
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(
                delta.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = delta.id or call["id"]
            if delta.function:
                call["function"]["name"] += delta.function.name or ""
                call["function"]["arguments"] += delta.function.arguments or ""
    return finish, [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_two_turn_tool_loop(main: Server, stream: bool):
    finish, calls = _tool_turn(main, stream)
    assert finish == "tool_calls"
    assert [(c["id"], c["function"]["name"]) for c in calls] == [("call_1", "get_weather")]
    args = json.loads(calls[0]["function"]["arguments"])
    assert args == {"city": "Paris"}
    messages = [
        *hi("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [{**c, "type": "function"} for c in calls]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": f"18C and sunny in {args['city']}"},
    ]
    second = client(main).chat.completions.create(model="moa", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == ANSWER


def test_per_request_options_survive_the_proxy(main: Server):
    with pytest.raises(openai.BadRequestError, match="bogus"):
        client(main).chat.completions.create(
            model="moa", messages=hi(), extra_body={"composite": {"params": {"bogus": 1}}}
        )
    raw = client(main).chat.completions.with_raw_response.create(
        model="moa", messages=hi(), extra_body={"composite": {"params": {"extra_layers": 1}}}
    )
    run = trace(main, raw.headers["x-composite-run-id"])["run"]
    assert run["calls"] == 7 and run["params"] == {"extra_layers": 1}


@pytest.mark.parametrize("model", ["no-such-mode", "composite/no-such-mode"])
def test_unknown_model_is_an_openai_error(main: Server, model: str):
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as caught:
        client(main).chat.completions.create(model=model, messages=hi())
    assert caught.value.status_code in (400, 404)
    assert isinstance(caught.value.body, dict) and caught.value.body.get("message")


@pytest.mark.parametrize(
    "body",
    [b'{"model": "moa", "messages": [', b'{"model": "moa"}', b"[1, 2]", b'{"model": "moa", "messages": []}'],
)
def test_malformed_body_is_400(main: Server, body: bytes):
    response = httpx.post(
        f"{main.url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/models", "/composite/modes", "/composite/metrics/summary"]
)
@pytest.mark.parametrize("key", [None, "sk-wrong-key-0123456789"], ids=["no-key", "wrong-key"])
def test_missing_or_wrong_key_is_401(main: Server, path: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if path == "/v1/chat/completions":
        response = httpx.post(
            f"{main.url}{path}", json={"model": "moa", "messages": hi()}, headers=headers, timeout=30
        )
    else:
        response = httpx.get(f"{main.url}{path}", headers=headers, timeout=30)
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"


def test_the_sdk_sees_an_authentication_error(main: Server):
    with pytest.raises(openai.AuthenticationError):
        client(main, key="sk-wrong-key-0123456789").chat.completions.create(model="moa", messages=hi())


def test_introspection_api(main: Server):
    client(main).chat.completions.create(model="direct", messages=hi())
    modes = get(main, "/composite/modes").json()
    assert modes["profile"] == "mock"
    direct = next(m for m in modes["modes"] if m["name"] == "direct")
    assert direct["models"] == ["composite/direct", "direct"]
    assert direct["resolved_models"] == {"strong": "openai/gpt-4o-mini"}
    assert direct["steps"][0]["kind"] == "call"
    summary = get(main, "/composite/metrics/summary?last_hours=1").json()
    stats = summary["modes"]["direct"]
    assert stats["requests"] >= 1 and stats["latency_ms"]["p50"] > 0 and stats["calls_per_request"] == 1.0
    assert summary["models"]["openai/gpt-4o-mini"]["calls"] >= 1
    for query in ("last_hours=-1", "last_hours=abc"):
        response = get(main, f"/composite/metrics/summary?{query}")
        assert response.status_code == 422 and response.json()["error"]["param"] == "last_hours"
    response = get(main, "/composite/traces/no-such-run")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_keys_never_reach_traces_or_logs(main: Server):
    raw = client(main).chat.completions.with_raw_response.create(
        model="direct", messages=hi(), extra_body={"composite": {"profile": "stream"}}
    )
    llm = trace(main, raw.headers["x-composite-run-id"])["steps"][0]["children"][
        0
    ]  # commits this worker's writes
    assert llm["request"]["params"]["api_key"] == "[REDACTED]"
    httpx.get(
        f"{main.url}/v1/models", headers={"Authorization": "Bearer sk-wrong-key-0123456789"}, timeout=30
    )
    stored = b"".join(p.read_bytes() for p in main.log_path.parent.glob("main.db*"))
    for secret in (MASTER, UPSTREAM_KEY, "sk-wrong-key-0123456789"):
        assert secret.encode() not in stored
        assert secret not in main.log()


# -- several workers, one database ----------------------------------------------------------------


def test_two_workers_serve_concurrently_into_one_database(servers: dict[str, Server]):
    server = servers["workers"].wait_ready()

    async def batch(n: int) -> list[str]:
        # New connections (no keep-alive), a little apart, so the kernel hands them to both workers
        # (a worker that wakes first would otherwise accept a whole burst).
        http = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)
        aclient = openai.AsyncOpenAI(
            api_key=MASTER, base_url=f"{server.url}/v1", http_client=http, max_retries=0
        )

        async def one(i: int) -> Any:
            await asyncio.sleep(i * 0.02)
            return await aclient.chat.completions.with_raw_response.create(model="moa", messages=hi())

        async with http:
            raws = await asyncio.gather(*(one(i) for i in range(n)))
        return [r.headers["x-composite-run-id"] for r in raws]

    run_ids: list[str] = []
    for _ in range(4):
        run_ids += asyncio.run(batch(16))
        if len({rid.split("-")[1][:8] for rid in run_ids}) >= 2:  # ids carry a per-process prefix
            break
    assert server.stop() == 0  # SIGTERM: every worker drains and commits its traces
    db = sqlite3.connect(server.log_path.parent / "workers.db")
    try:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        rows = db.execute("select id, pid, status, source, created_at, finished_at from runs").fetchall()
    finally:
        db.close()
    assert sorted(r[0] for r in rows) == sorted(run_ids)
    assert {r[2] for r in rows} == {"ok"} and {r[3] for r in rows} == {"serve"}
    pids = {r[1] for r in rows}
    assert len(pids) == 2
    # runs of the two workers overlapped in time: they really ran side by side
    spans = {pid: [(r[4], r[5]) for r in rows if r[1] == pid] for pid in pids}
    a, b = spans.values()
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


# -- SIGTERM, with a generated key ----------------------------------------------------------------


def test_sigterm_finishes_in_flight_requests_then_exits_zero(servers: dict[str, Server]):
    server = servers["shutdown"].wait_ready()
    key_file = server.log_path.parent / "home-shutdown" / ".config" / "composite" / "serve-master-key"
    key = key_file.read_text().strip()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert server.log().count(key) == 1  # printed once, at start-up
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            reply = client(server, key).chat.completions.create(
                model="direct", messages=hi(), extra_body={"composite": {"profile": "slow"}}
            )
            result["content"] = reply.choices[0].message.content
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the run is in flight
        if get(server, "/composite/metrics/summary", key).json()["modes"].get("direct", {}).get("running"):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the slow request never started")
    assert server.stop() == 0
    thread.join(timeout=60)
    assert result == {"content": "slow answer"}  # it waited for the request in flight
    assert "Application shutdown complete" in server.log()
    db = sqlite3.connect(server.log_path.parent / "shutdown.db")
    try:
        assert db.execute("select status, source from runs").fetchall() == [("ok", "serve")]
    finally:
        db.close()


# -- the --print-config snippet on a plain LiteLLM proxy ------------------------------------------


def test_print_config_snippet_works_on_a_plain_litellm_proxy(servers: dict[str, Server]):
    server = servers["plain"].wait_ready()
    raw = client(server).chat.completions.with_raw_response.create(model="moa", messages=hi())
    assert raw.parse().choices[0].message.content == ANSWER
    assert raw.headers["llm_provider-x-composite-run-id"]
    ids = {m.id for m in client(server).models.list()}
    assert ids == {"composite/moa-v1", "moa-v1", "moa", "composite/direct", "direct"}
    reply = client(server).chat.completions.create(model="composite/direct", messages=hi())
    assert reply.choices[0].message.content == ANSWER


# -- the embedded model through the server --------------------------------------------------------


@pytest.mark.real_model
def test_embedded_model_through_the_server(tmp_path: Path):
    script = tmp_path / "cli.py"
    script.write_text(SCRIPT)
    port = free_port()
    argv = [
        sys.executable,
        str(script),
        "serve",
        "--profile",
        "local",
        "--modes",
        "direct",
        "--port",
        str(port),
        "--master-key",
        MASTER,
        "--db",
        str(tmp_path / "t.db"),
    ]
    server = Server("real", argv, tmp_path, _env(tmp_path / "home"), port)  # home: made by conftest
    try:
        server.wait_ready()
        raw = (
            client(server)
            .with_options(timeout=120)
            .chat.completions.with_raw_response.create(
                model="direct", messages=hi("Say hello."), max_tokens=8
            )
        )
        reply = raw.parse()
        assert reply.choices[0].message.content.strip()
        assert 0 < reply.usage.completion_tokens <= 8
        assert trace(server, raw.headers["x-composite-run-id"])["run"]["profile"] == "local"
    finally:
        server.close()


def test_a_client_that_disconnects_mid_stream_cancels_the_run(main: Server):
    """The client goes away while the proposers are still working: the run is recorded as
    cancelled, and its in-flight calls stop instead of running (and billing) on."""
    import socket

    path = main.log_path.parent / "main.db"
    known = {r[0] for r in sqlite3.connect(path).execute("select id from runs")}
    body = json.dumps({"model": "moa", "messages": hi("Tell me about castling."), "stream": True,
                       "composite": {"profile": "slow"}}).encode()  # fmt: skip
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {MASTER}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    client = socket.create_connection(("127.0.0.1", main.port), timeout=10)
    client.sendall(request)

    def new_run() -> tuple[str, str] | None:
        rows = (
            sqlite3.connect(path).execute("select id, status from runs order by created_at desc").fetchall()
        )
        fresh = [r for r in rows if r[0] not in known]
        return fresh[0] if fresh else None

    deadline = time.time() + 20
    while (run := new_run()) is None and time.time() < deadline:
        time.sleep(0.05)  # wait until the run has started: its proposers (1 s each) are in flight
    client.close()  # the client goes away before any token was sent
    assert run is not None, "the run never started"
    while time.time() < deadline and (run := new_run()) is not None and run[1] == "running":
        time.sleep(0.1)
    assert run is not None and run[1] == "cancelled", run
    steps = (
        sqlite3.connect(path)
        .execute("select name, status from steps where run_id = ? and kind = 'llm'", [run[0]])
        .fetchall()
    )
    assert steps and all(status == "cancelled" for _, status in steps), steps
