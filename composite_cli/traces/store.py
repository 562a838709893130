"""The trace store: the only code that writes SQL.

One SQLite file (WAL mode, busy timeout) written through sqlite-utils by a single writer thread
per process, so recording a trace never blocks the event loop. Reads open their own connection.
"""

from __future__ import annotations

import atexit
import functools
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from composite_cli.errors import CompositeError
from composite_cli.traces.migrations import apply_migrations

BUSY_TIMEOUT_MS = 10_000
# How long the writer thread lets writes gather before committing them (flush and close don't wait).
LINGER_S = 0.05
_STOP = object()


class TraceStoreError(CompositeError):
    """The trace database cannot be opened or written."""


class TraceStoreUnreadable(TraceStoreError):
    """The trace database exists but a read failed (not a trace database yet, locked, damaged).
    `reason` is the driver's words."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class RunNotFound(CompositeError):
    """No run has this id."""


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    # Names come from our own code (tables and columns of the schema), never from input.
    names = ", ".join(f"[{c}]" for c in columns)
    marks = ", ".join("?" for _ in columns)
    return f"insert or replace into [{table}] ({names}) values ({marks})"  # noqa: S608


@functools.lru_cache(maxsize=256)
def _update_sql(table: str, columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"[{c}] = ?" for c in columns)
    return f"update [{table}] set {sets} where id = ?"  # noqa: S608


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return sqlite_utils.Database(conn)


def _create_private(path: Path) -> None:
    """Create the file with user-only permissions before SQLite does (it holds people's data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def open_database(path: Path) -> sqlite_utils.Database:
    """Open (creating and migrating if needed) a trace database for writing."""
    try:
        _create_private(path)
        db = _connect(path)
        db.enable_wal()
        apply_migrations(db)
        mark_abandoned(db)
    except (OSError, sqlite3.Error) as exc:
        raise TraceStoreError(f"cannot open trace database {path}: {exc}") from None
    return db


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True  # another store in this very process may have runs in flight
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_abandoned(db: sqlite_utils.Database) -> int:
    """Give a final status to runs (and evals) left `running` by a process that no longer exists.

    Every request ends with exactly one final status, even when its process was killed."""
    marked = 0
    with db.conn:
        for table, status, message in (
            ("runs", "error", "interrupted: the process (pid {pid}) stopped before the run finished"),
            ("eval_runs", "interrupted", None),
        ):
            rows = db.conn.execute(f"select id, pid from [{table}] where status = 'running'").fetchall()  # noqa: S608
            for run_id, pid in rows:
                if _alive(pid):
                    continue
                if message is None:
                    db.conn.execute(f"update [{table}] set status = ? where id = ?", [status, run_id])  # noqa: S608
                else:
                    db.conn.execute(
                        "update runs set status = ?, error = ? where id = ?",
                        [status, message.format(pid=pid), run_id],
                    )
                    db.conn.execute(
                        "update steps set status = 'error', error = 'interrupted' "
                        "where run_id = ? and status = 'running'",
                        [run_id],
                    )
                marked += 1
    return marked


class TraceStore:
    """Queue writes to a background thread; read with fresh connections."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._hurry = threading.Event()  # set by flush and close: commit now
        self.batches = 0  # transactions the writer thread committed (one per batch of writes)

    # -- writing --------------------------------------------------------------------------
    def open(self) -> TraceStore:
        """Create/migrate the database and start the writer thread (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return self
            db = open_database(self.path)
            self._thread = threading.Thread(
                target=self._writer, args=(db,), name="composite-trace-writer", daemon=True
            )
            self._thread.start()
            atexit.register(self.close)
        return self

    def _writer(self, db: sqlite_utils.Database) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, tuple):
                # Let the writes of the next moments pile up (a flush or close cuts this short): one
                # wake-up and one transaction for all of them. Waking per write made this thread
                # take the GIL back from the event loop at every row (each sqlite call releases it),
                # which cost the loop far more wall time than the writes cost CPU.
                self._hurry.wait(LINGER_S)
            self._hurry.clear()
            batch = [item]
            while True:  # drain whatever else is waiting: one transaction for all of it
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(op is _STOP for op in batch)
            waiters = [op for op in batch if isinstance(op, threading.Event)]
            writes = [op for op in batch if isinstance(op, tuple)]
            try:
                if writes:
                    self.batches += 1
                with db.conn:
                    for sql, params in writes:
                        db.conn.execute(sql, params)
            except sqlite3.Error:
                # One bad write must not lose the others: redo them one by one.
                for sql, params in writes:
                    try:
                        with db.conn:
                            db.conn.execute(sql, params)
                    except sqlite3.Error as exc:
                        self._error = self._error or exc
            for event in waiters:
                event.set()
            if stop:
                db.conn.close()
                return

    def _submit(self, sql: str, params: list[Any]) -> None:
        if self._thread is None:
            self.open()
        self._queue.put((sql, params))

    # Generic primitives, private to traces/: callers outside it use the domain writes below
    # (and traces/eval_records.py for evals). Table and column names come from our own code.
    def _write_row(self, table: str, row: dict[str, Any]) -> None:
        """Insert a row, replacing any row with the same primary key."""
        self._submit(_insert_sql(table, tuple(row)), list(row.values()))

    def _update_row(self, table: str, row_id: str, fields: dict[str, Any]) -> None:
        """Set some columns of the row whose `id` is `row_id`."""
        self._submit(_update_sql(table, tuple(fields)), [*fields.values(), row_id])

    # -- domain writes (what the recorder, the call cache and the demo data write) --------------
    def begin_run(self, row: dict[str, Any]) -> None:
        """Record a run that started (`row` holds the runs columns, `id` first)."""
        self._write_row("runs", row)

    def finish_run(self, run_id: str, fields: dict[str, Any]) -> None:
        """Give a run its final status, totals and output."""
        self._update_row("runs", run_id, fields)

    def start_step(self, row: dict[str, Any]) -> None:
        """Record a step that started (a steps row)."""
        self._write_row("steps", row)

    def finish_step(self, step_id: str, fields: dict[str, Any]) -> None:
        """Give a step its final status, latency, tokens, cost and output."""
        self._update_row("steps", step_id, fields)

    def record_call(self, row: dict[str, Any]) -> None:
        """Record one finished model call as a whole step row (kind 'llm'), replacing any earlier
        row with its id."""
        self._write_row("steps", row)

    def cache_response(self, key: str, model: str, response_json: str, created_at: str) -> None:
        """Keep a model's response under its request key (replacing an older one)."""
        row = {"key": key, "model": model, "response_json": response_json, "created_at": created_at}
        self._write_row("call_cache", row)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued write is committed; raise if a write failed."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        self._hurry.set()
        done.wait(timeout)
        if self._error is not None:
            error, self._error = self._error, None
            raise TraceStoreError(f"writing traces to {self.path} failed: {error}")

    def close(self) -> None:
        """Commit what is queued and stop the writer thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        self._hurry.set()
        thread.join(timeout=30)
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001, S110 - atexit may already be running
            pass

    # -- reading --------------------------------------------------------------------------
    @contextmanager
    def reader(self) -> Iterator[sqlite_utils.Database]:
        """A fresh read connection; a driver error inside the block comes out as TraceStoreError.
        Queries live in traces/ (reader.py's TraceReader), never in front ends."""
        if not self.path.exists():
            raise TraceStoreError(f"no trace database at {self.path}")
        try:
            db = _connect(self.path)
        except sqlite3.Error as exc:
            raise TraceStoreError(f"cannot open trace database {self.path}: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:
            raise TraceStoreUnreadable(
                f"cannot read the trace database {self.path}: {exc}", str(exc)
            ) from exc
        finally:
            db.conn.close()

    # Shortcuts to the reader (traces/reader.py owns the queries).
    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run's row. Raises RunNotFound."""
        from composite_cli.traces.reader import TraceReader

        return TraceReader(self).run(run_id)

    def run_steps(self, run_id: str) -> list[dict[str, Any]]:
        """A run's steps in start order."""
        from composite_cli.traces.reader import TraceReader

        return TraceReader(self).steps(run_id)

    def list_runs(
        self, limit: int = 20, mode: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest runs (all columns), optionally filtered."""
        from composite_cli.traces.reader import TraceReader

        return TraceReader(self).runs(mode=mode, status=status, limit=limit)
