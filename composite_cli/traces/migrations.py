"""Append-only schema migrations. Never edit a released migration: add a new function."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_runs_and_steps(db: sqlite_utils.Database) -> None:
    db.table("runs").create(
        {
            "id": str,
            "created_at": str,
            "finished_at": str,
            "mode": str,
            "source": str,
            "user": str,
            "profile": str,
            "status": str,
            "input": str,
            "output": str,
            "finish_reason": str,
            "calls": int,
            "prompt_tokens": int,
            "completion_tokens": int,
            "cost_usd": float,
            "latency_ms": float,
            "error": str,
            "params_json": str,
            "pid": int,
        },
        pk="id",
    )
    db.table("steps").create(
        {
            "id": str,
            "run_id": str,
            "parent_id": str,
            "seq": int,
            "depth": int,
            "kind": str,
            "name": str,
            "alias": str,
            "model": str,
            "status": str,
            "started_at": str,
            "offset_ms": float,
            "latency_ms": float,
            "prompt_tokens": int,
            "completion_tokens": int,
            "cost_usd": float,
            "retries": int,
            "request_json": str,
            "response_json": str,
            "output": str,
            "scratchpad": str,
            "error": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id"), ("parent_id", "steps", "id")],
    )
    db.table("steps").create_index(["run_id"])
    db.table("runs").create_index(["created_at"])
    db.table("runs").create_index(["mode", "created_at"])


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Run every migration not yet applied; return the names applied now."""
    db.table("_migrations").create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
    done = {row["name"] for row in db.table("_migrations").rows}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        with db.conn:
            fn(db)
            db.table("_migrations").insert(
                {"name": name, "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            )
        applied.append(name)
    return applied


@migration
def m002_run_stats(db: sqlite_utils.Database) -> None:
    """Counters for recursive runs: REPL iterations, recursion depth reached, sub-calls."""
    runs = db.table("runs")
    runs.add_column("rlm_iterations", int)
    runs.add_column("rlm_depth", int)
    runs.add_column("rlm_sub_calls", int)


@migration
def m003_evals_and_cache(db: sqlite_utils.Database) -> None:
    """Eval runs and their results (linked to runs), and the exact-request call cache."""
    db.table("eval_runs").create(
        {
            "id": str,
            "created_at": str,
            "finished_at": str,
            "file": str,
            "file_hash": str,
            "modes": str,
            "profile": str,
            "settings": str,
            "status": str,
            "cases": int,
            "pid": int,
        },
        pk="id",
    )
    db.table("eval_results").create(
        {
            "id": str,
            "eval_run_id": str,
            "case_id": str,
            "mode": str,
            "repeat": int,
            "run_id": str,
            "judge_run_id": str,
            "score": float,
            "passed": int,
            "explanation": str,
            "latency_ms": float,
            "prompt_tokens": int,
            "completion_tokens": int,
            "tokens": int,
            "cost_usd": float,
            "calls": int,
            "cached_calls": int,
            "error": str,
            "created_at": str,
            "input": str,
            "output": str,
        },
        pk="id",
        foreign_keys=[
            ("eval_run_id", "eval_runs", "id"),
            ("run_id", "runs", "id"),
            ("judge_run_id", "runs", "id"),
        ],
    )
    db.table("eval_results").create_index(["eval_run_id", "mode"])
    db.table("call_cache").create(
        {"key": str, "model": str, "response_json": str, "created_at": str}, pk="key"
    )
    db.table("steps").add_column("cached", int)
