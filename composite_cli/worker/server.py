"""The worker: an asyncio Unix-socket server that runs modes for `composite chat` clients.

Each connection carries one request. A run resolves the client's settings again here (from the
absolute config and database paths and the profile name it sent; values such as API keys never
cross the socket, the environments are equal by hash), runs the mode with a fresh `Runner` and
streams every engine event back. A client that goes away cancels its run. The worker exits when it
has been idle (no connection) for `idle_timeout` seconds, or when asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from composite_cli.errors import one_line
from composite_cli.redact import redact_text
from composite_cli.worker.identity import Identity
from composite_cli.worker.paths import peer_uid
from composite_cli.worker.protocol import (
    DEFAULT_IDLE_S,
    MAX_LINE,
    ProtocolError,
    decode,
    encode,
    error_message,
    event_message,
    result_message,
    settings_from_message,
)

log = logging.getLogger("composite.worker")


class WorkerServer:
    """Serves runs on `socket_path` until stopped or idle for `idle_timeout` seconds.

    `clock` and `poll_s` are injectable so tests can drive the idle timer."""

    def __init__(
        self,
        socket_path: Path,
        identity: Identity,
        *,
        idle_timeout: float = DEFAULT_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float | None = None,
    ):
        self.socket_path = socket_path
        self.identity = identity
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.poll_s = poll_s if poll_s is not None else max(0.05, min(5.0, idle_timeout / 20))
        self.started_at = time.time()
        self.last_active = clock()
        self.connections = 0
        self.active_runs = 0
        self.runs_served = 0
        self._stop: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._socket_inode: int | None = None
        # Code a run imported (a tool named by dotted path, a lazily imported library): file ->
        # mtime. A changed file means a new process would run other code, so runs are refused.
        self._known_modules = set(sys.modules)
        self._stamps: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the socket (mode 0600) and start accepting."""
        self._stop = asyncio.Event()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._connection, path=str(self.socket_path), limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.socket_path, 0o600)
        self._socket_inode = self.socket_path.stat().st_ino
        self.last_active = self.clock()

    async def serve(self) -> None:
        """Start, then serve until `stop()` or the idle timeout; then close and remove the socket."""
        if self._server is None:
            await self.start()
        assert self._stop is not None
        watcher = asyncio.create_task(self._watch_idle())
        try:
            await self._stop.wait()
        finally:
            watcher.cancel()
            await self.close()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._remove_socket()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def _remove_socket(self) -> None:
        # Only our own socket file: a newer worker may already have replaced it.
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path.stat().st_ino == self._socket_inode:
                self.socket_path.unlink()

    def idle_expired(self) -> bool:
        """No connection open, and none for `idle_timeout` seconds."""
        return self.connections == 0 and self.clock() - self.last_active >= self.idle_timeout

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self.idle_expired():
                log.info("idle for %.0fs: stopping", self.clock() - self.last_active)
                self.stop()
                return

    def status(self) -> dict[str, Any]:
        return {
            "type": "status",
            "pid": os.getpid(),
            "version": self.identity.version,
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            # The status request is itself a connection.
            "idle_s": 0.0 if self.connections > 1 else round(self.clock() - self.last_active, 1),
            "idle_timeout_s": self.idle_timeout,
            "active_runs": self.active_runs,
            "runs_served": self.runs_served,
            "socket": str(self.socket_path),
        }

    # -- connections ----------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            sock = writer.get_extra_info("socket")
            if sock is None or peer_uid(sock) != os.getuid():
                log.warning("refused a connection from another user")
                return
            line = await reader.readline()
            if not line:
                return
            request = decode(line)
            op = request.get("op")
            if op == "status":
                status = self.status()
                status["matches"] = self.identity.mismatch(Identity.from_json(request.get("identity")))
                await _send(writer, status)
            elif op == "stop":
                if request.get("if_idle") and self.active_runs:
                    await _send(writer, {"type": "busy", "active_runs": self.active_runs})
                else:
                    log.info("asked to stop")
                    await _send(writer, {"type": "stopping", "pid": os.getpid()})
                    self.stop()
            elif op == "run":
                await self._run(request, reader, writer)
            else:
                await _send(writer, {"type": "error", "kind": "error", "message": f"unknown op {op!r}"})
        except (ProtocolError, ConnectionError) as exc:
            log.warning("connection dropped: %s", exc)
        finally:
            self.connections -= 1
            self.last_active = self.clock()
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _stamp_new_modules(self) -> None:
        for name in set(sys.modules) - self._known_modules:
            path = getattr(sys.modules.get(name), "__file__", None)
            if path:
                with contextlib.suppress(OSError):
                    self._stamps[path] = os.stat(path).st_mtime_ns
        self._known_modules = set(sys.modules)

    def loaded_code_changed(self) -> bool:
        """Whether a file of code a run imported has changed (or gone) since."""
        for path, mtime in self._stamps.items():
            try:
                if os.stat(path).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False

    async def _run(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        reason = self.identity.mismatch(Identity.from_json(request.get("identity")))
        if reason is None and self.loaded_code_changed():
            reason = "code"
        if reason is not None:
            await _send(writer, {"type": "refused", "reason": reason, "active_runs": self.active_runs})
            return
        from composite_cli.engine.runtime import RunRequest
        from composite_cli.runner import Runner

        self.active_runs += 1
        runner: Runner | None = None
        run: asyncio.Task[Any] | None = None
        try:
            try:
                settings = settings_from_message(request.get("settings") or {})
                runner = Runner(settings)
                run_request = RunRequest(**request["request"])
            except Exception as exc:  # noqa: BLE001 - settings or a request that do not load: tell the client
                await _send(writer, error_message(exc, one_line(exc)))
                return
            await _send(writer, {"type": "accepted"})

            def forward(event: Any) -> None:
                if not writer.is_closing():
                    writer.write(encode(event_message(event)))

            run = asyncio.create_task(runner.run(str(request["mode"]), run_request, subscribers=[forward]))
            gone = asyncio.create_task(reader.read())  # the client sends nothing more: EOF = gone
            try:
                await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
            if not run.done():
                run.cancel()
            try:
                result = await run
            except asyncio.CancelledError:
                if _being_cancelled():
                    raise  # the worker itself is stopping
                runner.flush()
                await _send(writer, {"type": "cancelled"})
                return
            except Exception as exc:  # noqa: BLE001 - whatever ended the run goes back to its client
                line = one_line(exc)
                if line is None:
                    log.error("run failed: %s", redact_text(repr(exc)))
                runner.flush()
                await _send(writer, error_message(exc, line))
                return
            runner.flush()  # the client may read the trace (--trace) as soon as it has the result
            await _send(writer, result_message(result))
        finally:
            if run is not None and not run.done():
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
            self.active_runs -= 1
            self.runs_served += 1
            self._stamp_new_modules()
            if runner is not None:
                runner.close()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(encode(message))
    await writer.drain()
