"""The client side: run a turn in the warm worker, starting it on first use.

`run_turn` returns None whenever the worker cannot be used (turned off, unsupported platform, a
directory that is not private, settings it could not resolve identically, a worker with other code
or another environment that is busy): the caller then runs in-process, exactly as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import composite_cli
from composite_cli.errors import CompositeError, ConfigError
from composite_cli.worker import switch
from composite_cli.worker.identity import Identity
from composite_cli.worker.paths import (
    WorkerPaths,
    WorkerUnavailable,
    ensure_private_dir,
    peer_uid,
    supported,
    worker_paths,
)
from composite_cli.worker.protocol import (
    DEFAULT_IDLE_S,
    LineReader,
    ProtocolError,
    encode,
    error_from,
    event_from,
    result_from,
    settings_from_message,
)

if TYPE_CHECKING:
    from composite_cli.config import Settings
    from composite_cli.engine.runtime import RunRequest, RunResult
    from composite_cli.events import Subscriber

START_TIMEOUT_S = 60.0  # a cold start imports LiteLLM: seconds, more on a busy machine
CANCEL_WAIT_S = 3.0  # after Ctrl-C, how long to wait for the worker to record the cancellation
_LOG_LIMIT = 1 << 20


class WorkerLost(CompositeError):
    """The worker went away in the middle of a run."""


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    off = env.get("COMPOSITE_NO_WORKER", "").strip().lower() in ("1", "true", "yes", "on")
    return switch.allowed() and not off and supported()


def idle_timeout(environ: Mapping[str, str] | None = None) -> float:
    """`$COMPOSITE_WORKER_IDLE`: seconds without a command before the worker exits (default 600)."""
    env = os.environ if environ is None else environ
    raw = env.get("COMPOSITE_WORKER_IDLE", "").strip()
    if not raw:
        return DEFAULT_IDLE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"COMPOSITE_WORKER_IDLE must be a number of seconds above 0, got {raw!r}")
    return value


def run_turn(
    settings: Settings, mode: str, request: RunRequest, subscribers: Iterable[Subscriber]
) -> RunResult | None:
    """Run one turn in the worker (None: it cannot be used here; run in-process)."""
    if not enabled():
        return None
    return WorkerClient(worker_paths(), idle=idle_timeout()).run(settings, mode, request, subscribers)


# -- what the client sends -----------------------------------------------------------------------


def _model_overrides(settings: Settings) -> list[str] | None:
    """The --model overrides in effect, as ALIAS=MODEL (None: a difference they cannot express)."""
    base = settings.profile_named(settings.profile.name)
    out = []
    for alias, params in settings.profile.aliases.items():
        if base.aliases.get(alias) == params:
            continue
        if not isinstance(params, Mapping) or set(params) != {"model"}:
            return None
        out.append(f"{alias}={params['model']}")
    return out


def _absolute(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        db_path=settings.db_path.absolute(),
        config_path=settings.config_path.absolute() if settings.config_path else None,
        modes_path=tuple(p.absolute() for p in settings.modes_path),
    )


def settings_message(settings: Settings) -> dict[str, Any] | None:
    """Paths and names from which the worker resolves the same settings (no parameter values: a
    profile may hold API keys). None when re-resolving them here does not give the same result."""
    overrides = _model_overrides(settings)
    if overrides is None:
        return None
    settings = _absolute(settings)
    message = {
        "config": str(settings.config_path) if settings.config_path else None,
        "profile": settings.profile.name,
        "models": overrides,
        "db": str(settings.db_path),
        "no_content": settings.no_content,
    }
    try:
        again = settings_from_message(message)
    except CompositeError:
        return None
    return message if _absolute(again) == settings else None


def run_message(
    settings: Settings, mode: str, request: RunRequest, identity: Identity
) -> dict[str, Any] | None:
    """The `run` request, or None when part of it cannot travel as JSON."""
    resolved = settings_message(settings)
    if resolved is None:
        return None
    message = {
        "op": "run",
        "identity": identity.to_json(),
        "settings": resolved,
        "mode": mode,
        "request": dataclasses.asdict(request),
    }
    try:
        json.dumps(message, ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return message


# -- the connection ------------------------------------------------------------------------------


def spawn_detached(paths: WorkerPaths, idle: float) -> subprocess.Popen[bytes]:
    """Start the worker in its own session (a Ctrl-C in this terminal does not reach it)."""
    if paths.log.exists() and paths.log.stat().st_size > _LOG_LIMIT:
        paths.log.unlink()
    log = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    package_parent = str(Path(composite_cli.__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {package_parent!r}); "
        "from composite_cli.worker.__main__ import main; raise SystemExit(main())"
    )
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, "--dir", str(paths.dir), "--idle", str(idle)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=paths.dir,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log)


class WorkerClient:
    """Talks to the worker of `paths`; `spawn` starts one when none answers."""

    def __init__(
        self,
        paths: WorkerPaths,
        *,
        idle: float = DEFAULT_IDLE_S,
        environ: Mapping[str, str] | None = None,
        spawn: Callable[[WorkerPaths, float], Any] = spawn_detached,
        start_timeout: float = START_TIMEOUT_S,
    ):
        self.paths = paths
        self.idle = idle
        self.environ = environ
        self.spawn = spawn
        self.start_timeout = start_timeout

    # -- runs ---------------------------------------------------------------------------------
    def run(
        self, settings: Settings, mode: str, request: RunRequest, subscribers: Iterable[Subscriber]
    ) -> RunResult | None:
        message = run_message(settings, mode, request, Identity.current(self.environ))
        if message is None:
            return None
        try:
            opened = self._open_run(message)
        except WorkerUnavailable as exc:
            sys.stderr.write(f"composite: {exc}; running in-process\n")
            sys.stderr.flush()
            return None
        if opened is None:
            return None
        sock, reader = opened
        subs = list(subscribers)
        try:
            while True:
                reply = reader.message()
                if reply is None:
                    raise WorkerLost(f"the background worker stopped during the run (see {self.paths.log})")
                kind = reply.get("type")
                if kind == "event":
                    event = event_from(reply)
                    for subscriber in subs:
                        subscriber(event)
                elif kind == "result":
                    return result_from(reply)
                elif kind == "error":
                    raise error_from(reply, str(self.paths.log))
                else:
                    raise ProtocolError(f"unexpected message from the worker: {kind!r}")
        except KeyboardInterrupt:
            self._cancel(sock, reader)
            raise
        finally:
            sock.close()

    def _open_run(self, message: dict[str, Any]) -> tuple[socket.socket, LineReader] | None:
        """A connection on which the worker accepted the run; None: run in-process."""
        ensure_private_dir(self.paths.dir)
        for attempt in range(2):
            sock = self.connect() or self._start()
            reader = LineReader(sock)
            try:
                sock.sendall(encode(message))
                reply = reader.message()
            except OSError:
                sock.close()
                return None
            kind = None if reply is None else reply.get("type")
            if kind == "accepted":
                return sock, reader
            sock.close()
            if reply is not None and kind == "error":
                raise error_from(reply, str(self.paths.log))
            if kind != "refused" or attempt:
                return None
            # Other code or another environment: replace that worker if it is idle.
            if not self._replace_idle_worker():
                return None
        return None

    def _replace_idle_worker(self) -> bool:
        reply = self.stop(if_idle=True)
        return reply is None or reply.get("type") == "stopping"

    def _cancel(self, sock: socket.socket, reader: LineReader) -> None:
        """Tell the worker to cancel (end of our stream) and give it a moment to record it."""
        # Best effort: the worker may be gone already, which cancels the run just as well.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(CANCEL_WAIT_S)
        with contextlib.suppress(OSError, ProtocolError):
            while (reply := reader.message()) is not None:
                if reply.get("type") in ("cancelled", "result", "error"):
                    break

    # -- connecting and starting --------------------------------------------------------------
    def connect(self) -> socket.socket | None:
        """A connection to the running worker, or None when none is listening."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.paths.socket))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise WorkerUnavailable(f"cannot reach the background worker: {exc.strerror}") from None
        if peer_uid(sock) != os.getuid():
            sock.close()
            raise WorkerUnavailable(f"{self.paths.socket} is served by another user")
        return sock

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        fd = os.open(self.paths.lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _start(self) -> socket.socket:
        """Start the worker (one starter at a time) and wait until it accepts connections."""
        with self._start_lock():
            sock = self.connect()
            if sock is not None:
                return sock  # another command started it meanwhile
            process = self.spawn(self.paths, self.idle)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                sock = self.connect()
                if sock is not None:
                    return sock
                code = process.poll() if hasattr(process, "poll") else None
                if code is not None:
                    raise WorkerUnavailable(
                        f"the background worker exited while starting (code {code}; see {self.paths.log})"
                    )
                time.sleep(0.02)
        raise WorkerUnavailable(
            f"the background worker did not start within {self.start_timeout:.0f}s (see {self.paths.log})"
        )

    # -- management -----------------------------------------------------------------------------
    def _ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        sock = self.connect()
        if sock is None:
            return None
        with sock:
            sock.sendall(encode(message))
            return LineReader(sock).message()

    def status(self) -> dict[str, Any] | None:
        """The running worker's status (None: no worker), with `matches`: why this shell's
        commands could not use it ("version", "code", "environment"), or None when they can."""
        if not self.paths.dir.exists():
            return None
        return self._ask({"op": "status", "identity": Identity.current(self.environ).to_json()})

    def stop(self, *, if_idle: bool = False, wait_s: float = 10.0) -> dict[str, Any] | None:
        """Ask the worker to exit and wait until its socket is gone. None: no worker was running;
        `{"type": "busy"}` when `if_idle` and it is running something."""
        if not self.paths.dir.exists():
            return None
        reply = self._ask({"op": "stop", "if_idle": if_idle})
        if reply is None or reply.get("type") != "stopping":
            return reply
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            probe = self.connect()
            if probe is None:
                return reply
            probe.close()
            time.sleep(0.02)
        raise WorkerUnavailable(
            f"the background worker (pid {reply.get('pid')}) did not stop in {wait_s:.0f}s"
        )
