"""The warm worker: protocol, permissions, identity checks, cancellation and the idle timer.

The worker runs in this process (a thread with its own event loop) on a socket in a short private
temporary directory, with the fake model; only the last test starts a real detached worker."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeModel

from composite_cli.config import load_settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.errors import ConfigError, one_line
from composite_cli.events import RunFinished, RunStarted, TokenDelta
from composite_cli.runner import Runner
from composite_cli.worker import client as worker_client
from composite_cli.worker import switch
from composite_cli.worker.client import WorkerClient, run_message, settings_message
from composite_cli.worker.identity import Identity, environment_hash
from composite_cli.worker.paths import WorkerPaths, WorkerUnavailable, ensure_private_dir
from composite_cli.worker.protocol import LineReader, RemoteRunError, encode
from composite_cli.worker.server import WorkerServer

CONFIG = """\
profile: fake
profiles:
  fake:
    "*": {model: openai/fake}
  other:
    "*": {model: openai/other}
"""


@pytest.fixture
def paths() -> Iterator[WorkerPaths]:
    """A private worker directory with a short path (Unix socket paths are limited to ~100 bytes)."""
    base = Path(tempfile.mkdtemp(prefix="cw-", dir="/tmp"))
    try:
        yield WorkerPaths(base / "w")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def settings(isolated_home: Path) -> Any:
    (isolated_home / "composite.yaml").write_text(CONFIG, encoding="utf-8")
    return load_settings()


class ServerThread:
    """A WorkerServer on its own event loop in a thread."""

    def __init__(self, server: WorkerServer):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve() -> None:
            await self.server.start()
            self.ready.set()
            await self.server.serve()

        self.loop.run_until_complete(serve())

    def start(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def poll(self) -> int | None:  # the `spawn` result protocol: still running
        return None if self.thread.is_alive() else 0

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.stop)
            self.thread.join(10)


@pytest.fixture
def servers() -> Iterator[list[ServerThread]]:
    started: list[ServerThread] = []
    yield started
    for server in started:
        server.stop()


def start_server(paths: WorkerPaths, servers: list[ServerThread], **kw: Any) -> ServerThread:
    ensure_private_dir(paths.dir)
    identity = kw.pop("identity", None) or Identity.current()
    thread = ServerThread(WorkerServer(paths.socket, identity, **kw)).start()
    servers.append(thread)
    return thread


def no_spawn(paths: WorkerPaths, idle: float) -> Any:
    raise AssertionError("the client must not start a worker here")


def ask(paths: WorkerPaths, message: dict[str, Any]) -> list[dict[str, Any]]:
    """Send one request line; every reply line until the worker closes."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(paths.socket))
        sock.sendall(encode(message))
        reader = LineReader(sock)
        out = []
        try:
            while (reply := reader.message()) is not None:
                out.append(reply)
        except ConnectionResetError:  # closed without reading our request
            pass
        return out


def eventually(condition: Any, timeout: float = 10.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        done.wait(0.01)
    return bool(condition())


def request(text: str = "q", **kw: Any) -> RunRequest:
    return RunRequest(messages=[{"role": "user", "content": text}], source="chat", stream=True, **kw)


def runs(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select id, status from runs order by created_at").fetchall()
    finally:
        conn.close()


# -- runs ----------------------------------------------------------------------------------------


def test_a_run_in_the_worker_streams_the_same_events_as_in_process(
    paths, servers, settings, fake_model: FakeModel
):
    fake_model.add("Paris is the capital of France.").add("Paris is the capital of France.")
    start_server(paths, servers)
    seen: list[Any] = []
    result = WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), [seen.append])
    assert result is not None
    assert result.text == "Paris is the capital of France."
    assert result.status == "ok"
    assert "".join(e.text for e in seen if isinstance(e, TokenDelta)) == result.text
    assert isinstance(seen[0], RunStarted) and isinstance(seen[-1], RunFinished)

    local: list[Any] = []
    runner = Runner(settings)
    try:
        asyncio.run(runner.run("direct", request(), subscribers=[local.append]))
    finally:
        runner.close()
    assert [type(e).__name__ for e in seen] == [type(e).__name__ for e in local]
    # Both runs are in the same trace database, the worker's flushed before the result came back.
    assert [status for _, status in runs(settings.db_path)] == ["ok", "ok"]
    assert runs(settings.db_path)[0][0] == result.run_id


def test_model_overrides_and_the_profile_travel_by_name(paths, servers, isolated_home, fake_model):
    (isolated_home / "composite.yaml").write_text(CONFIG, encoding="utf-8")
    settings = load_settings(profile="other", models=["*=openai/override"])
    message = settings_message(settings)
    assert message == {
        "config": str((isolated_home / "composite.yaml").absolute()),
        "profile": "other",
        "models": ["*=openai/override"],
        "db": str((isolated_home / "traces.db").absolute()),
        "no_content": False,
    }
    start_server(paths, servers)
    result = WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), [])
    assert result is not None and result.profile == "other"
    assert fake_model.requests[-1]["model"] == "openai/override"


def test_parameter_values_never_cross_the_socket(isolated_home):
    (isolated_home / "composite.yaml").write_text(
        'profiles:\n  keyed:\n    "*": {model: openai/x, api_key: sk-secret-value-123456}\n', encoding="utf-8"
    )
    message = run_message(load_settings(profile="keyed"), "direct", request(), Identity.current())
    assert message is not None
    assert "sk-secret" not in encode(message).decode()


def test_settings_the_worker_cannot_resolve_the_same_way_run_in_process(settings):
    import dataclasses

    from composite_cli.config import Profile

    odd = dataclasses.replace(
        settings, profile=Profile("fake", {"*": {"model": "openai/x", "temperature": 0}})
    )
    assert settings_message(odd) is None
    assert run_message(settings, "direct", request(params={"when": object()}), Identity.current()) is None


def test_a_failed_run_gives_the_in_process_error_line(paths, servers, settings, fake_model):
    import litellm

    error = litellm.AuthenticationError(message="bad key", llm_provider="openai", model="openai/fake")
    fake_model.add(None, error=error)
    start_server(paths, servers)
    with pytest.raises(RemoteRunError) as raised:
        WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), [])
    assert str(raised.value) == one_line(error)
    assert runs(settings.db_path)[0][1] == "error"


# -- who may use it ------------------------------------------------------------------------------


def test_directory_and_socket_are_private(paths, servers):
    start_server(paths, servers)
    assert stat.S_IMODE(paths.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.socket.stat().st_mode) == 0o600


def test_a_directory_open_to_others_is_not_used(paths, settings, capsys):
    paths.dir.mkdir(mode=0o755)
    os.chmod(paths.dir, 0o755)
    with pytest.raises(WorkerUnavailable, match="open to other users"):
        ensure_private_dir(paths.dir)
    assert WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), []) is None
    assert "running in-process" in capsys.readouterr().err
    assert not paths.socket.exists()


def test_a_peer_with_another_uid_gets_nothing(paths, servers, settings, monkeypatch):
    import composite_cli.worker.server as server_module

    start_server(paths, servers)
    monkeypatch.setattr(server_module, "peer_uid", lambda sock: os.getuid() + 1)
    assert ask(paths, {"op": "status", "identity": {}}) == []
    assert WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), []) is None


def test_other_code_or_environment_is_refused(paths, servers):
    here = Identity.current()
    start_server(paths, servers, identity=here)
    other_env = Identity.current({**os.environ, "OPENAI_API_KEY": "sk-other-key-000000"})
    other_code = Identity(here.version, "0" * 64, here.env)
    for identity, reason in ((other_env, "environment"), (other_code, "code")):
        replies = ask(paths, {"op": "run", "identity": identity.to_json(), "settings": {}, "mode": "direct"})
        assert replies == [{"type": "refused", "reason": reason, "active_runs": 0}]


def test_a_change_to_code_a_run_imported_is_refused(
    paths, servers, settings, fake_model, tmp_path, monkeypatch
):
    """A module first imported during a run (a tool by dotted path, say) is watched: once its file
    changes, the worker refuses runs, as its process would run the old code."""
    import importlib

    module = tmp_path / "user_tool_mod.py"
    module.write_text("VALUE = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    thread = start_server(paths, servers)
    importlib.import_module("user_tool_mod")  # as if a run had imported it
    assert WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), []) is not None
    assert eventually(lambda: thread.server.runs_served == 1)  # modules are stamped after each run
    assert not thread.server.loaded_code_changed()
    stamp = module.stat().st_mtime_ns + 10**9
    os.utime(module, ns=(stamp, stamp))
    assert thread.server.loaded_code_changed()
    replies = ask(
        paths, {"op": "run", "identity": Identity.current().to_json(), "settings": {}, "mode": "direct"}
    )
    assert replies == [{"type": "refused", "reason": "code", "active_runs": 0}]
    sys.modules.pop("user_tool_mod", None)


def test_terminal_variables_do_not_change_the_environment_hash():
    base = {"HOME": "/home/u", "OPENAI_API_KEY": "sk-a"}
    assert environment_hash(base) == environment_hash(
        {**base, "PWD": "/x", "TERM": "xterm", "TMUX_PANE": "%3"}
    )
    assert environment_hash(base) != environment_hash({**base, "OPENAI_API_KEY": "sk-b"})
    assert environment_hash(base) != environment_hash({**base, "LITELLM_LOG": "DEBUG"})
    assert environment_hash(base) != environment_hash({**base, "COMPOSITE_PROFILE": "x"})


def test_a_busy_worker_with_another_environment_means_in_process(paths, servers, settings, fake_model):
    fake_model.add("slow answer", delay=2.0)
    start_server(paths, servers)
    busy = threading.Thread(
        target=lambda: WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), [])
    )
    busy.start()
    try:
        assert eventually(lambda: servers[0].server.active_runs == 1)
        other = WorkerClient(
            paths, spawn=no_spawn, environ={**os.environ, "OPENAI_API_KEY": "sk-another-one-42"}
        )
        assert other.run(settings, "direct", request(), []) is None
    finally:
        busy.join(10)
    assert servers[0].thread.is_alive()


def test_an_idle_worker_with_another_environment_is_replaced(paths, servers, settings, fake_model):
    old = start_server(paths, servers)
    environ = {**os.environ, "OPENAI_API_KEY": "sk-another-one-42"}

    def spawn(p: WorkerPaths, idle: float) -> ServerThread:
        return start_server(p, servers, identity=Identity.current(environ))

    result = WorkerClient(paths, spawn=spawn, environ=environ).run(settings, "direct", request(), [])
    assert result is not None and result.text == "fake answer"
    old.thread.join(10)
    assert not old.thread.is_alive()
    assert len(servers) == 2 and servers[1].thread.is_alive()


def test_turned_off_unless_the_console_script_allows_it(monkeypatch, settings):
    monkeypatch.setattr(switch, "_allowed", False)
    assert worker_client.run_turn(settings, "direct", request(), []) is None
    switch.allow()  # what the console-script entry point does
    monkeypatch.setenv("COMPOSITE_NO_WORKER", "1")
    assert worker_client.enabled() is False
    monkeypatch.delenv("COMPOSITE_NO_WORKER")
    assert worker_client.enabled() is True
    switch.disable()  # `composite --no-worker`
    assert worker_client.enabled() is False


def test_idle_timeout_comes_from_the_environment():
    assert worker_client.idle_timeout({}) == 600
    assert worker_client.idle_timeout({"COMPOSITE_WORKER_IDLE": "30"}) == 30
    with pytest.raises(ConfigError, match="COMPOSITE_WORKER_IDLE"):
        worker_client.idle_timeout({"COMPOSITE_WORKER_IDLE": "soon"})


# -- lifecycle -----------------------------------------------------------------------------------


def test_ctrl_c_cancels_the_run_in_the_worker(paths, servers, settings, fake_model):
    fake_model.add("one two three four five six seven eight nine ten " * 20, chunk_delay=0.05)
    thread = start_server(paths, servers)

    def interrupt(event: Any) -> None:
        if isinstance(event, TokenDelta):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        WorkerClient(paths, spawn=no_spawn).run(settings, "direct", request(), [interrupt])
    # The client waited for the worker to record the cancellation.
    assert [status for _, status in runs(settings.db_path)] == ["cancelled"]
    assert eventually(lambda: thread.server.active_runs == 0 and thread.server.runs_served == 1)


def test_the_worker_exits_after_the_idle_period(paths):
    now = [1000.0]
    ensure_private_dir(paths.dir)
    server = WorkerServer(
        paths.socket, Identity.current(), idle_timeout=60, clock=lambda: now[0], poll_s=0.01
    )

    async def scenario() -> None:
        await server.start()
        serving = asyncio.create_task(server.serve())
        now[0] += 59
        await asyncio.sleep(0.05)
        assert not serving.done()
        _reader, writer = await asyncio.open_unix_connection(str(paths.socket))
        await asyncio.sleep(0.05)
        now[0] += 120  # a connection is open: never idle
        await asyncio.sleep(0.05)
        assert not serving.done()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # closing the connection restarts the idle period
        assert not serving.done()
        now[0] += 61
        await asyncio.wait_for(serving, 5)

    asyncio.run(scenario())
    assert not paths.socket.exists()


def test_status_and_stop(paths, servers):
    client = WorkerClient(paths, spawn=no_spawn)
    assert client.status() is None
    assert client.stop() is None
    thread = start_server(paths, servers)
    status = client.status()
    assert status is not None
    assert status["pid"] == os.getpid() and status["matches"] is None and status["active_runs"] == 0
    assert client.stop()["type"] == "stopping"
    thread.thread.join(10)
    assert not thread.thread.is_alive() and not paths.socket.exists()


def test_a_worker_that_dies_at_start_up_means_in_process(paths, settings, capsys):
    class Dead:
        def poll(self) -> int:
            return 1

    assert WorkerClient(paths, spawn=lambda p, idle: Dead()).run(settings, "direct", request(), []) is None
    assert "exited while starting" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_detached_worker_serves_the_console_script(paths, isolated_home):
    """`composite chat` twice through the console script: the first starts the worker, the second
    reuses it; `composite worker status` and `stop` manage it."""
    exe = Path(sys.executable).with_name("composite")
    if not exe.exists():
        pytest.skip("console script not installed")
    (isolated_home / "composite.yaml").write_text(
        'profile: dry\nprofiles:\n  dry:\n    "*": {model: openai/gpt-4o-mini, mock_response: "Paris"}\n',
        encoding="utf-8",
    )
    env = {**os.environ, "COMPOSITE_WORKER_DIR": str(paths.dir)}
    env.pop("COMPOSITE_NO_WORKER", None)

    def composite(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *args], capture_output=True, text=True, cwd=isolated_home, env=env, timeout=120
        )

    try:
        for _ in range(2):
            done = composite("chat", "-q", "hi")
            assert (done.returncode, done.stdout, done.stderr) == (0, "Paris\n", "")
        status = composite("worker", "status")
        assert "2 served" in status.stdout, status.stdout + status.stderr
        assert "Usable from this shell: yes" in status.stdout
        assert [s for _, s in runs(isolated_home / "traces.db")] == ["ok", "ok"]
    finally:
        stopped = composite("worker", "stop")
    assert stopped.stdout.startswith("Stopped the worker")
    assert not paths.socket.exists()
