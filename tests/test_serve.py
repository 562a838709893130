"""`composite serve` without a server process: master key, generated proxy config, the ASGI edge,
the introspection API and metrics, and the CLI's checks. The end-to-end tests with real clients
against a server subprocess are in test_serve_e2e.py."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from composite_cli.config import Profile, Settings
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest
from composite_cli.serve import auth, config
from composite_cli.serve.errors import ServeError

# -- master key ---------------------------------------------------------------------------------


def test_master_key_precedence_flag_env_config():
    env = {"LITELLM_MASTER_KEY": "sk-from-env", "XDG_CONFIG_HOME": "/nonexistent"}
    assert auth.resolve_master_key("sk-flag", environ=env).source == "flag"
    key = auth.resolve_master_key(None, config_key="sk-config", environ=env)
    assert (key.value, key.source, key.explicit) == ("sk-from-env", "environment", True)
    key = auth.resolve_master_key(None, config_key="sk-config", environ={"XDG_CONFIG_HOME": "/nonexistent"})
    assert (key.value, key.source) == ("sk-config", "litellm-config")


def test_generated_key_is_stored_private_and_reused(isolated_home: Path):
    first = auth.resolve_master_key(None)
    assert first.source == "generated" and first.value.startswith("sk-") and len(first.value) > 40
    assert first.path is not None and first.path.parent.name == "composite"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    again = auth.resolve_master_key(None)
    assert (again.value, again.source) == (first.value, "stored")
    assert not again.explicit


def test_stored_key_file_permissions_are_tightened(isolated_home: Path):
    path = auth.key_file()
    path.parent.mkdir(parents=True)
    path.write_text("sk-stored-key-123456\n")
    path.chmod(0o644)
    assert auth.resolve_master_key(None).value == "sk-stored-key-123456"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_empty_key_is_refused():
    with pytest.raises(ServeError, match="empty"):
        auth.resolve_master_key("  ", environ={})


def test_master_key_repr_hides_the_value():
    key = auth.MasterKey("sk-very-secret-value", "flag")
    assert "sk-very-secret-value" not in repr(key) and "sk-very-secret-value" not in str(key)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("myhost.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool):
    assert auth.is_loopback(host) is loopback


def test_non_loopback_bind_needs_an_explicit_key():
    auth.check_bind("127.0.0.1", auth.MasterKey("sk-x", "generated"))
    auth.check_bind("0.0.0.0", auth.MasterKey("sk-x", "environment"))
    with pytest.raises(ServeError, match="explicit master key"):
        auth.check_bind("0.0.0.0", auth.MasterKey("sk-x", "stored"))


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"authorization", b"Bearer sk-abc")], "sk-abc"),
        ([(b"Authorization", b"bearer   sk-abc ")], "sk-abc"),
        ([(b"x-api-key", b"sk-xyz")], "sk-xyz"),
        ([(b"api-key", b"sk-azure")], "sk-azure"),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"content-type", b"application/json")], None),
    ],
)
def test_request_key(headers: list[tuple[bytes, bytes]], key: str | None):
    assert auth.request_key(headers) == key


# -- the generated proxy config -----------------------------------------------------------------


def test_every_valid_mode_is_served_under_its_names():
    served = {m.name: m.names for m in config.served_modes(ModeLibrary())}
    assert served["moa-v1"] == ("composite/moa-v1", "moa-v1", "moa")
    assert served["direct"] == ("composite/direct", "direct")
    assert {"reflect-v1", "think-v1", "rlm-v1"} <= set(served)


def test_modes_subset_and_unknown_mode():
    assert [m.name for m in config.served_modes(ModeLibrary(), ["moa", "direct", "moa-v1"])] == [
        "moa-v1",
        "direct",
    ]
    with pytest.raises(ServeError, match="unknown mode 'nope'"):
        config.served_modes(ModeLibrary(), ["nope"])


def test_invalid_modes_are_skipped_unless_asked_for(tmp_path: Path):
    (tmp_path / "broken-v1.yaml").write_text("name: broken-v1\nsteps: []\n")
    library = ModeLibrary([tmp_path])
    assert "broken-v1" not in [m.name for m in config.served_modes(library)]
    with pytest.raises(ServeError, match="invalid"):
        config.served_modes(library, ["broken"])


def test_proxy_config_merges_a_users_litellm_config(tmp_path: Path):
    user_file = tmp_path / "litellm.yaml"
    user_file.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": "gpt-4o",
                        "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/K"},
                    },
                    {"model_name": "moa", "litellm_params": {"model": "openai/their-moa"}},
                ],
                "litellm_settings": {
                    "drop_params": True,
                    "custom_provider_map": [{"provider": "mine", "custom_handler": "my_handler.instance"}],
                },
                "general_settings": {"master_key": "os.environ/THEIR_KEY", "alerting": []},
                "router_settings": {"routing_strategy": "simple-shuffle"},
                "include": ["extra.yaml"],
            }
        )
    )
    user = config.read_litellm_config(user_file)
    assert config.config_master_key(user, {"THEIR_KEY": "sk-theirs"}) == "sk-theirs"
    merged = config.proxy_config(config.served_modes(ModeLibrary(), ["moa", "direct"]), user)
    names = [e["model_name"] for e in merged["model_list"]]
    assert names[:2] == ["gpt-4o", "moa"]  # theirs first, and their `moa` wins over our alias
    assert names.count("moa") == 1 and "composite/moa-v1" in names and "moa-v1" in names
    assert {"model_name": "direct", "litellm_params": {"model": "composite/direct"}}.items() <= next(
        e for e in merged["model_list"] if e["model_name"] == "direct"
    ).items()
    providers = merged["litellm_settings"]["custom_provider_map"]
    assert [p["provider"] for p in providers] == ["composite", "local", "faulty", "dry", "mine"]
    assert providers[0]["custom_handler"] == "composite_cli.serve.handler.handler"
    assert merged["litellm_settings"]["drop_params"] is True
    assert merged["general_settings"] == {
        "master_key": "os.environ/LITELLM_MASTER_KEY",
        "alerting": [],
        "trusted_proxy_ranges": [],  # clients connect directly unless the user's config says otherwise
    }
    # the user's router settings are kept; composite only adds num_retries 0 when they set none
    assert merged["router_settings"] == {"routing_strategy": "simple-shuffle", "num_retries": 0}
    assert merged["include"] == [str(tmp_path / "extra.yaml")]


def test_written_config_is_private_and_holds_no_key(tmp_path: Path):
    merged = config.proxy_config(config.served_modes(ModeLibrary(), ["direct"]))
    path = config.write_config(merged, tmp_path / "c.yaml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        yaml.safe_load(path.read_text())["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_list: [\n", "invalid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("model_list: {a: 1}\n", "must be a list"),
        # each entry as LiteLLM's start-up reads it (it ended in a traceback): file:line: field
        ("model_list:\n  - 5\n", r"bad.yaml:2: model_list\[0\]: must be a mapping"),
        (
            "model_list:\n  - model_name: a\n    litellm_params: {model: x}\n  - model_name: b\n    litellm_params: 5\n",
            r"bad.yaml:4: model_list\[1\].litellm_params: must be a mapping",
        ),
        (
            "model_list:\n  - litellm_params: {model: x}\n",
            r"model_list\[0\].model_name: must be a model name",
        ),
        (
            "model_list:\n  - model_name: a\n    litellm_params: {rpm: 2}\n",
            r"litellm_params.model: must be a model",
        ),
    ],
)
def test_bad_litellm_config(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ServeError, match=message):
        config.read_litellm_config(path)
    with pytest.raises(ServeError, match="not found"):
        config.read_litellm_config(tmp_path / "missing.yaml")


def test_virtual_keys_need_a_database():
    assert not config.uses_database({}, {})
    assert config.uses_database({}, {"DATABASE_URL": "postgresql://x"})
    assert config.uses_database({"general_settings": {"database_url": "postgresql://x"}}, {})


# -- the CLI's checks (in-process; the command is mounted on a local app) -------------------------


def _cli() -> typer.Typer:
    from composite_cli.cli.serve import serve

    app = typer.Typer(pretty_exceptions_show_locals=False)
    app.command("serve")(serve)
    app.command("noop")(lambda: None)  # a second command, so `serve` stays a sub-command
    return app


def test_print_config_is_a_working_snippet():
    result = CliRunner().invoke(_cli(), ["serve", "--print-config", "--modes", "moa,direct"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["litellm_settings"]["custom_provider_map"][0] == {
        "provider": "composite",
        "custom_handler": "composite_cli.provider.handler",
    }
    names = [e["model_name"] for e in data["model_list"]]
    assert names == ["composite/moa-v1", "moa-v1", "moa", "composite/direct", "direct"]


def test_refuses_non_loopback_without_key():
    result = CliRunner().invoke(_cli(), ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "refusing to listen on 0.0.0.0" in result.output
    assert "Traceback" not in result.output


def test_unknown_mode_and_bad_options_are_one_line_errors(tmp_path: Path):
    result = CliRunner().invoke(_cli(), ["serve", "--modes", "nope"])
    assert result.exit_code == 1 and "Error: --modes: unknown mode 'nope'" in result.output
    result = CliRunner().invoke(_cli(), ["serve", "--litellm-config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1 and "LiteLLM config not found" in result.output
    result = CliRunner().invoke(_cli(), ["serve", "--log-level", "loud"])
    assert result.exit_code == 2 and "--log-level" in result.output


def test_serve_help_lists_every_option():
    result = CliRunner().invoke(_cli(), ["serve", "--help"], env={"COLUMNS": "200"})
    for option in (
        "--host",
        "--port",
        "--modes",
        "--workers",
        "--master-key",
        "--litellm-config",
        "--grace",
        "--print-config",
        "--profile",
        "--config",
        "--db",
        "--allow-code",
    ):
        assert option in result.output


def test_importing_the_command_imports_no_server_libraries():
    code = (
        "import sys, composite_cli.cli.serve\n"
        "print([m for m in ('litellm', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_plan_sets_what_workers_need(tmp_path: Path):
    from composite_cli.serve.app import AppOptions
    from composite_cli.serve.server import plan

    settings = Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    p = plan(settings, modes=["direct"], master_key="sk-plan-key", environ={})
    assert p.environ["LITELLM_MASTER_KEY"] == "sk-plan-key"
    assert p.environ["COMPOSITE_PROFILE"] == "p"
    assert p.environ["COMPOSITE_DB"] == str((tmp_path / "t.db").resolve())
    options = AppOptions.from_env(p.environ)
    assert options.served == [("direct", ["composite/direct", "direct"])] and not options.virtual_keys
    assert "sk-plan-key" not in json.dumps(p.config)
    with pytest.raises(ServeError, match="workers"):
        plan(settings, workers=0, master_key="sk-x", environ={})


def test_allow_code_from_the_command_line_reaches_every_worker(tmp_path: Path):
    """Workers are fresh processes: `--allow-code` travels in their environment and becomes the
    settings their runner uses (the config file's `allow_code` they read themselves)."""
    from composite_cli.serve.app import AppOptions
    from composite_cli.serve.handler import ServeCompositeLLM
    from composite_cli.serve.server import plan

    settings = Settings(profile=Profile("p", {"*": {"model": "openai/x"}}), db_path=tmp_path / "t.db")
    p = plan(settings.allowing_code(["mypkg.tools"]), modes=["direct"], master_key="sk-x", environ={})
    options = AppOptions.from_env(p.environ)
    assert list(options.allow_code) == ["mypkg.tools"]
    worker = ServeCompositeLLM(source="serve")
    worker.use_settings(settings.allowing_code(options.allow_code))
    assert worker.runner.library.allow_code == ("mypkg.tools",)


# -- the ASGI edge, around a stand-in for the proxy app -------------------------------------------

KEY = "sk-edge-test-key-0123456789"


async def _call(
    app: Any, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        body = {"model": "moa", "messages": [{"role": "user", "content": "hi"}]}  # a well-formed request
        response = await client.post(path, headers=headers or {}, json=body)
    return response.status_code, dict(response.headers), response.json()


def _proxy_stub(
    status: int = 200,
    body: Any = None,
    provider_run_id: str | None = None,
    slot_run_id: str | None = None,
    provider_status: str | None = None,
):
    from composite_cli.serve.handler import current_slot

    async def app(scope: Any, receive: Any, send: Any) -> None:
        slot = current_slot.get()
        if slot_run_id and slot is not None:
            slot.run_ids.append(slot_run_id)  # what the handler's subscriber does on RunStarted
        headers = [(b"content-type", b"application/json")]
        if provider_run_id:
            headers.append((b"llm_provider-x-composite-run-id", provider_run_id.encode()))
        if provider_status:
            headers.append((b"llm_provider-x-composite-status", provider_status.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body or {"ok": True}).encode()})

    return app


def _edge(inner: Any, **kw: Any) -> Any:
    from composite_cli.serve.edge import CompositeEdge

    return CompositeEdge(inner, master_key=KEY, introspection=_proxy_stub(body={"introspection": True}), **kw)


def _assert_openai_401(status: int, body: Any) -> None:
    assert status == 401
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "invalid_api_key"
    assert KEY not in json.dumps(body)


async def test_edge_refuses_missing_and_wrong_keys():
    app = _edge(_proxy_stub())
    status, headers, body = await _call(app, "/v1/chat/completions")
    _assert_openai_401(status, body)
    assert "No API key" in body["error"]["message"] and headers["www-authenticate"].startswith("Bearer")
    status, _, body = await _call(app, "/v1/chat/completions", {"Authorization": "Bearer sk-wrong-key"})
    _assert_openai_401(status, body)
    assert "sk-wrong-key" not in json.dumps(body)
    status, _, body = await _call(app, "/composite/modes", {"Authorization": "Bearer sk-wrong-key"})
    _assert_openai_401(status, body)
    status, _, body = await _call(app, "/health/liveliness")  # probes stay open
    assert status == 200


async def test_edge_passes_the_master_key_and_adds_the_run_id_header():
    status, headers, _ = await _call(
        _edge(_proxy_stub(provider_run_id="run-from-provider")), "/v1/chat/completions", {"x-api-key": KEY}
    )
    assert status == 200 and headers["x-composite-run-id"] == "run-from-provider"
    # a stream's headers go out before the provider's are known: the run's start fills the slot
    status, headers, _ = await _call(
        _edge(_proxy_stub(slot_run_id="run-from-slot")),
        "/v1/chat/completions",
        {"Authorization": f"Bearer {KEY}"},
    )
    assert headers["x-composite-run-id"] == "run-from-slot"
    status, headers, _ = await _call(_edge(_proxy_stub()), "/v1/models", {"Authorization": f"Bearer {KEY}"})
    assert status == 200 and "x-composite-run-id" not in headers


async def test_edge_adds_the_status_header_next_to_the_run_id():
    body = {"choices": [{"finish_reason": "length"}], "composite": {"status": "partial"}}
    stub = _proxy_stub(body=body, provider_run_id="r1", provider_status="partial")
    status, headers, got = await _call(_edge(stub), "/v1/chat/completions", {"x-api-key": KEY})
    assert status == 200
    assert (headers["x-composite-run-id"], headers["x-composite-status"]) == ("r1", "partial")
    assert got == body  # the body (with its composite block) passes through untouched
    _, headers, _ = await _call(
        _edge(_proxy_stub(slot_run_id="r2")), "/v1/chat/completions", {"x-api-key": KEY}
    )
    assert "x-composite-status" not in headers  # a stream: the status is in its last chunk


async def test_edge_routes_composite_paths_to_introspection():
    status, _, body = await _call(
        _edge(_proxy_stub()), "/composite/modes", {"Authorization": f"Bearer {KEY}"}
    )
    assert (status, body) == (200, {"introspection": True})


async def test_edge_with_virtual_keys_normalizes_the_proxys_auth_errors():
    no_db = {
        "error": {"message": "No connected db.", "type": "no_db_connection", "param": None, "code": "400"}
    }
    app = _edge(_proxy_stub(400, no_db), virtual_keys=True)
    _assert_openai_401(
        *(await _call(app, "/v1/chat/completions", {"Authorization": "Bearer sk-virtual"}))[::2]
    )
    other = {"error": {"message": "bad model", "type": "invalid_request_error", "param": None, "code": "400"}}
    app = _edge(_proxy_stub(400, other), virtual_keys=True)
    status, _, body = await _call(app, "/v1/chat/completions", {"Authorization": "Bearer sk-virtual"})
    assert (status, body) == (400, other)
    app = _edge(_proxy_stub(200, {"fine": 1}), virtual_keys=True)
    assert (await _call(app, "/v1/chat/completions", {"Authorization": "Bearer sk-virtual"}))[0] == 200


async def test_edge_closes_websockets_without_the_master_key():
    sent: list[Any] = []
    reached: list[bool] = []

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/v1/realtime", "headers": [(b"authorization", b"Bearer sk-no")]}
    await _edge(proxy)(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}] and not reached
    await _edge(proxy)({**scope, "headers": [(b"authorization", f"Bearer {KEY}".encode())]}, receive, send)
    assert reached == [True]


async def test_edge_closes_the_trace_store_after_the_proxy_shuts_down():
    closed: list[str] = []

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                closed.append("proxy")
                await send({"type": "lifespan.shutdown.complete"})
                return

    app = _edge(proxy, on_shutdown=lambda: closed.append("store"))
    incoming = asyncio.Queue()
    for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
        incoming.put_nowait(message)
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.shutdown.complete":
            assert closed == ["proxy", "store"]  # closed before uvicorn hears the app is done

    await app({"type": "lifespan"}, incoming.get, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# -- introspection API and metrics over a real trace store ---------------------------------------


@pytest.fixture
def traced_runner(fake_model: Any, fake_profile: Profile, tmp_path: Path) -> Any:
    from composite_cli.runner import Runner

    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "traces.db"))
    fake_model.on("skeptic", error=RuntimeError("boom"))

    async def go() -> list[str]:
        ids = []
        for mode, source in (("moa", "serve"), ("moa", "serve"), ("direct", "serve"), ("direct", "chat")):
            request = RunRequest(messages=[{"role": "user", "content": "hi"}], source=source)
            ids.append((await runner.run(mode, request)).run_id)
        return ids

    runner.run_ids = asyncio.run(go())
    runner.flush()
    yield runner
    runner.close()


def _client(runner: Any) -> Any:
    from fastapi.testclient import TestClient

    from composite_cli.serve.introspection import introspection_app

    served = [("moa-v1", ["composite/moa-v1", "moa-v1", "moa"]), ("direct", ["composite/direct", "direct"])]
    return TestClient(introspection_app(runner, served))


def test_modes_endpoint_resolves_models_from_the_active_profile(traced_runner: Any):
    body = _client(traced_runner).get("/composite/modes").json()
    assert body["profile"] == "test"
    moa = body["modes"][0]
    assert moa["name"] == "moa-v1" and moa["models"] == ["composite/moa-v1", "moa-v1", "moa"]
    assert moa["description"].startswith("Layered mixture-of-agents")
    assert [s["id"] for s in moa["steps"]] == ["proposals", "layers", "answer"]
    assert moa["steps"][1]["branches"][0][0]["id"] == "refined"
    assert moa["resolved_models"] == {"fast": "openai/fake-model", "strong": "openai/fake-model"}


def test_trace_endpoint_nests_the_step_tree(traced_runner: Any):
    run_id = traced_runner.run_ids[0]
    body = _client(traced_runner).get(f"/composite/traces/{run_id}").json()
    assert body["run"]["id"] == run_id and body["run"]["source"] == "serve" and body["run"]["status"] == "ok"
    fanout = body["steps"][0]
    assert fanout["kind"] == "fanout" and len(fanout["children"]) == 3
    assert {c["name"] for c in fanout["children"]} == {"analyst", "teacher", "skeptic"}
    llm = fanout["children"][0]
    assert llm["kind"] == "llm" and isinstance(llm["request"], dict) and "request_json" not in llm


@pytest.mark.parametrize("path", ["/composite/traces/no-such-run", "/composite/nothing-here"])
def test_unknown_ids_and_paths_are_404(traced_runner: Any, path: str):
    response = _client(traced_runner).get(path)
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_metrics_summary(traced_runner: Any):
    body = _client(traced_runner).get("/composite/metrics/summary", params={"last_hours": 1}).json()
    assert set(body["modes"]) == {"moa-v1", "direct"}  # the `chat` run is not counted
    moa = body["modes"]["moa-v1"]
    assert moa["requests"] == 2 and moa["errors"] == 0 and moa["calls_per_request"] == 4.0
    assert moa["latency_ms"]["p50"] > 0 and moa["latency_ms"]["p95"] >= moa["latency_ms"]["p50"]
    assert moa["tokens"]["prompt"] > 0 and moa["cost_usd"]["unpriced_requests"] == 2
    model = body["models"]["openai/fake-model"]
    assert model["calls"] == 9 and model["errors"] == 2 and model["cost_usd"] is None
    everything = _client(traced_runner).get("/composite/metrics/summary?source=all").json()
    assert everything["modes"]["direct"]["requests"] == 2


def test_metrics_summary_counts_partial_runs_by_cap(fake_model: Any, fake_profile: Profile, tmp_path: Path):
    """rlm-v1 whose root never writes FINAL stops at max_iterations: partial, not an error."""
    from composite_cli.runner import Runner

    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "traces.db"))
    fake_model.script(
        lambda name, m: "```repl\nprint(len(context))\n```" if name.startswith("root") else None
    )

    async def go() -> None:
        for mode, params in (("rlm-v1", {"max_iterations": 1}),) * 2 + (("direct", {}),):
            request = RunRequest(messages=[{"role": "user", "content": "hi"}], params=params, source="serve")
            await runner.run(mode, request)

    asyncio.run(go())
    runner.flush()
    try:
        modes = _client(runner).get("/composite/metrics/summary").json()["modes"]
    finally:
        runner.close()
    rlm, direct = modes["rlm-v1"], modes["direct"]
    assert (rlm["requests"], rlm["errors"], rlm["partial"]) == (2, 0, 2)
    assert rlm["stopped_by"] == {"max_iterations (1)": 2}
    assert (direct["partial"], direct["stopped_by"]) == (0, {})


@pytest.mark.parametrize(
    "query",
    [
        "last_hours=-1",
        "last_hours=0",
        "last_hours=abc",
        "last_hours=nan",
        "last_hours=1e12",
        "source=DROP%20TABLE",
    ],
)
def test_bad_metrics_parameters_are_422(traced_runner: Any, query: str):
    response = _client(traced_runner).get(f"/composite/metrics/summary?{query}")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] in ("last_hours", "source")


def test_metrics_before_any_run(tmp_path: Path, fake_profile: Profile):
    from composite_cli.runner import Runner

    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "none.db"))
    body = _client(runner).get("/composite/metrics/summary").json()
    assert body["modes"] == {} and body["models"] == {}
    assert not os.path.exists(tmp_path / "none.db")


def test_an_invalid_served_mode_is_described_in_one_line(fake_profile: Profile, tmp_path: Path):
    """Every problem of a broken mode file on one line, as `composite modes validate` says it."""
    from fastapi.testclient import TestClient

    from composite_cli.runner import Runner
    from composite_cli.serve.introspection import introspection_app

    modes = tmp_path / "modes"
    modes.mkdir()
    (modes / "broken.yaml").write_text("name: broken\nsteps:\n  - id: a\n    kind: nope\n  - kind: call\n")
    runner = Runner(Settings(profile=fake_profile, db_path=tmp_path / "traces.db", modes_path=[modes]))
    try:
        body = TestClient(introspection_app(runner, [("broken", ["broken"])])).get("/composite/modes").json()
        (broken,) = body["modes"]
        assert broken["valid"] is False and "\n" not in broken["error"] and "; " in broken["error"]
    finally:
        runner.close()
