"""Eval runs and eval results in the trace database: the domain writes (begin an eval with its full
selection, record a result, mark it running again, finish it) and the reads the eval session needs
(one eval run with its saved selection, the results already done).

The eval code (evals/) never writes SQL or names a table: it calls these. Writes go through the
store's single writer thread; reads open their own connection (TraceStore.reader: a driver error comes out as
TraceStoreError). The other eval reads (the list, a run with its results) are TraceReader's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composite_cli.traces.reader import EvalRunNotFound
from composite_cli.traces.recorder import iso
from composite_cli.traces.store import TraceStore, TraceStoreError

RESULT_COLUMNS = (
    "id",
    "eval_run_id",
    "case_id",
    "mode",
    "repeat",
    "run_id",
    "judge_run_id",
    "score",
    "passed",
    "explanation",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens",
    "cost_usd",
    "calls",
    "cached_calls",
    "error",
    "created_at",
    "input",
    "output",
)
_RUN_COLUMNS = (
    "id",
    "created_at",
    "file",
    "file_hash",
    "modes",
    "profile",
    "settings",
    "status",
    "cases",
    "pid",
)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    # table and column names are this module's constants, never input
    names = ", ".join(f"[{c}]" for c in columns)
    return f"insert or replace into [{table}] ({names}) values ({', '.join('?' for _ in columns)})"  # noqa: S608


_INSERT_RUN = _insert("eval_runs", _RUN_COLUMNS)
_INSERT_RESULT = _insert("eval_results", RESULT_COLUMNS)


@dataclass(frozen=True, kw_only=True)
class EvalResultRecord:
    """One eval result row: a case × mode × repeat, its score or error, and its run's totals."""

    id: str
    eval_run_id: str
    case_id: str
    mode: str
    repeat: int
    latency_ms: float
    created_at: str
    input: str
    output: str | None = None
    run_id: str | None = None
    judge_run_id: str | None = None
    score: float | None = None
    passed: int | None = None
    explanation: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    calls: int | None = None
    cached_calls: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class EvalRunRecord:
    """An eval run as saved: what file (and its hash), which modes, and `settings`, the JSON object
    that holds the selection (case ids, filters, limit, scorer, repeats, parameters)."""

    id: str
    file: str
    file_hash: str
    modes: list[str]
    profile: str | None
    status: str | None
    cases: int | None
    settings: dict[str, Any]


def begin_eval(
    store: TraceStore,
    *,
    eval_run_id: str,
    file: str,
    file_hash: str,
    modes: list[str],
    profile: str,
    settings: dict[str, Any],
    cases: int,
    created_at: str | None = None,
) -> None:
    """Record a new eval run, `running`, with everything needed to redo its selection, in one write
    (so no crash can leave an eval without its selection); waits until it is committed.
    `created_at`: now unless given (demo data)."""
    row = {
        "id": eval_run_id,
        "created_at": created_at or iso(time.time()),
        "file": file,
        "file_hash": file_hash,
        "modes": json.dumps(modes),
        "profile": profile,
        "settings": json.dumps(settings),
        "status": "running",
        "cases": cases,
        "pid": os.getpid(),
    }
    store._submit(_INSERT_RUN, [row[c] for c in _RUN_COLUMNS])
    store.flush()


def resume_eval(store: TraceStore, eval_run_id: str) -> None:
    """Mark an eval run `running` again, owned by this process (so another process opening the
    database does not take it for abandoned by the process that started it)."""
    store._submit("update eval_runs set status = 'running', pid = ? where id = ?", [os.getpid(), eval_run_id])
    store.flush()


def finish_eval(store: TraceStore, eval_run_id: str, status: str, finished_at: str | None = None) -> None:
    """Give an eval run its final status (done, interrupted, error) and end time (now unless given)."""
    store._submit(
        "update eval_runs set status = ?, finished_at = ? where id = ?",
        [status, finished_at or iso(time.time()), eval_run_id],
    )
    store.flush()


def record_eval_result(store: TraceStore, result: EvalResultRecord) -> None:
    """Record (or replace: the id is deterministic, so a rerun case replaces its error) one result."""
    # getattr, not dataclasses.asdict, whose deep copy of every field cost 33 us per result against
    # 1.3 us (timeit, load 7.4; issue 16)
    store._submit(_INSERT_RESULT, [getattr(result, c) for c in RESULT_COLUMNS])


def _read(store: TraceStore, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    with store.reader() as db:  # a driver error comes out as TraceStoreError
        return list(db.query(sql, params))


def eval_run(store: TraceStore, eval_run_id: str) -> EvalRunRecord:
    """One eval run with its saved selection parsed (a full id: resolve prefixes and `latest` with
    TraceReader.eval_run_id first). Raises EvalRunNotFound."""
    rows = _read(store, "select * from eval_runs where id = ?", [eval_run_id])
    if not rows:
        raise EvalRunNotFound(f"no eval run with id {eval_run_id!r} in {store.path}")
    row = rows[0]
    try:
        settings = json.loads(row["settings"] or "{}")
        modes = json.loads(row["modes"] or "[]")
    except ValueError as exc:
        raise TraceStoreError(
            f"eval run {eval_run_id} in {store.path}: unreadable settings ({exc})"
        ) from None
    if not isinstance(settings, dict) or not isinstance(modes, list):
        raise TraceStoreError(f"eval run {eval_run_id} in {store.path}: unreadable settings")
    return EvalRunRecord(
        id=row["id"],
        file=row["file"],
        file_hash=row["file_hash"],
        modes=[str(m) for m in modes],
        profile=row["profile"],
        status=row["status"],
        cases=row["cases"],
        settings=settings,
    )


def done_result_ids(store: TraceStore, eval_run_id: str, *, without_errors: bool = False) -> set[str]:
    """The ids of the results an eval run has already recorded (`without_errors`: only those that
    did not end in an error, so errored cases run again)."""
    sql = "select id from eval_results where eval_run_id = ?"
    if without_errors:
        sql += " and error is null"
    return {str(row["id"]) for row in _read(store, sql, [eval_run_id])}


@dataclass(frozen=True)
class StoredEval:
    """An eval run read from a trace file (a shard to merge): its row as stored, its settings and
    modes parsed, and its result rows."""

    path: str
    row: dict[str, Any]
    settings: dict[str, Any]
    modes: list[Any]
    results: list[dict[str, Any]]


def sharded_evals(path: Path) -> list[StoredEval]:
    """The eval runs of the trace file at `path` that ran one shard (`--shard i/N`), oldest first,
    each with its results. The file is opened read-only. Raises TraceStoreError when it cannot be
    read, or holds an eval run whose settings are not JSON."""
    from composite_cli.traces.maintenance import read_source

    out: list[StoredEval] = []
    with read_source(path) as db:
        if "eval_runs" not in db.table_names():
            return out
        try:
            for row in db.query("select * from eval_runs order by created_at, id"):
                try:
                    settings = json.loads(row["settings"] or "{}")
                    modes = json.loads(row["modes"] or "[]")
                except (TypeError, ValueError) as exc:
                    raise TraceStoreError(
                        f"{path}: eval run {row['id']}: unreadable settings or modes ({exc})"
                    ) from None
                if not isinstance(settings, dict) or "shard" not in settings:
                    continue
                results = list(
                    db.query("select * from eval_results where eval_run_id = ? order by id", [row["id"]])
                )
                out.append(StoredEval(str(path), dict(row), settings, modes, results))
        except sqlite3.Error as exc:
            raise TraceStoreError(f"cannot read the eval runs of {path}: {exc}") from None
    return out
