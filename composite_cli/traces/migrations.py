"""Append-only schema migrations. Never edit a released migration: add a new function."""

from __future__ import annotations

import sqlite3
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


def _recorded(db: sqlite_utils.Database, name: str) -> bool:
    return db.conn.execute("select 1 from _migrations where name = ?", [name]).fetchone() is not None


def apply_migrations(db: sqlite_utils.Database, wait_s: float = 10.0) -> list[str]:
    """Run every migration not yet applied; return the names applied now.

    Several processes may open a new database at once (e.g. `serve --workers 4`): when another
    one is applying the same migration, this waits for it to be recorded instead of failing."""
    db.table("_migrations").create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
    applied = []
    for name, fn in MIGRATIONS:
        if _recorded(db, name):
            continue
        try:
            with db.conn:
                fn(db)
                db.table("_migrations").insert(
                    {"name": name, "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                )
        except sqlite3.OperationalError:
            deadline = time.monotonic() + wait_s
            while not _recorded(db, name):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            continue
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


# Views for browsing traces in Datasette. Views hold no data: to change one, drop and recreate it
# in a new migration with new SQL constants; never edit these (databases already have them).

_RUN_SUMMARY_V1 = """
select
  r.id,
  r.created_at,
  r.mode,
  r.status,
  r.source,
  r.profile,
  r.latency_ms,
  r.calls,
  (select count(*) from steps s where s.run_id = r.id and s.kind = 'llm') as llm_calls,
  (select max(s.depth) from steps s where s.run_id = r.id) as max_depth,
  coalesce(r.prompt_tokens, 0) + coalesce(r.completion_tokens, 0) as tokens,
  r.prompt_tokens,
  r.completion_tokens,
  r.cost_usd,
  (select count(*) from steps s where s.run_id = r.id and s.kind in ('tool', 'think')) as tool_steps,
  exists (
    select 1 from steps s
    where s.run_id = r.id and (
      s.kind in ('tool', 'think')
      or (s.kind = 'llm' and instr(s.request_json, '"tools"') > 0
          and case when json_valid(s.request_json)
            then json_extract(s.request_json, '$.params.tools') is not null else 0 end)
    )
  ) as used_tools,
  r.finish_reason,
  r.error
from runs r
"""

# p50/p95 by linear interpolation between order statistics (numpy's default, and the eval
# report's `percentile`): h = (n - 1) * q, value = x[floor(h)] + (x[floor(h) + 1] - x[floor(h)]) * frac(h).
_MODE_STATS_V1 = """
with ranked as (
  select mode, latency_ms,
    row_number() over (partition by mode order by latency_ms) - 1 as i,
    count(*) over (partition by mode) as n
  from runs
  where latency_ms is not null and status != 'running'
),
positions as (
  select mode, i, latency_ms, n, (n - 1) * 0.5 as h50, (n - 1) * 0.95 as h95 from ranked
),
percentiles as (
  select mode,
    max(case when i = cast(h50 as integer) then latency_ms end) as lo50,
    max(case when i = min(cast(h50 as integer) + 1, n - 1) then latency_ms end) as hi50,
    max(h50 - cast(h50 as integer)) as frac50,
    max(case when i = cast(h95 as integer) then latency_ms end) as lo95,
    max(case when i = min(cast(h95 as integer) + 1, n - 1) then latency_ms end) as hi95,
    max(h95 - cast(h95 as integer)) as frac95
  from positions
  group by mode
)
select
  r.mode,
  count(*) as requests,
  sum(r.status = 'error') as errors,
  sum(r.status = 'ok') as ok,
  round(p.lo50 + (p.hi50 - p.lo50) * p.frac50, 3) as p50_latency_ms,
  round(p.lo95 + (p.hi95 - p.lo95) * p.frac95, 3) as p95_latency_ms,
  round(avg(r.calls), 2) as mean_calls,
  sum(coalesce(r.prompt_tokens, 0) + coalesce(r.completion_tokens, 0)) as tokens,
  round(avg(coalesce(r.prompt_tokens, 0) + coalesce(r.completion_tokens, 0)), 1) as mean_tokens,
  sum(r.cost_usd) as cost_usd,
  avg(r.cost_usd) as mean_cost_usd
from runs r
left join percentiles p on p.mode = r.mode
group by r.mode
"""

_MODEL_STATS_V1 = """
select
  s.model,
  count(*) as calls,
  count(distinct s.run_id) as runs,
  sum(s.status = 'error') as errors,
  sum(coalesce(s.cached, 0)) as cached,
  sum(s.prompt_tokens) as prompt_tokens,
  sum(s.completion_tokens) as completion_tokens,
  sum(coalesce(s.prompt_tokens, 0) + coalesce(s.completion_tokens, 0)) as tokens,
  sum(s.cost_usd) as cost_usd,
  round(avg(s.latency_ms), 3) as mean_latency_ms,
  sum(coalesce(s.retries, 0)) as retries
from steps s
where s.kind = 'llm'
group by s.model
"""


@migration
def m004_summary_views(db: sqlite_utils.Database) -> None:
    """Views for Datasette and reports: run_summary, mode_stats, model_stats."""
    db.create_view("run_summary", _RUN_SUMMARY_V1.strip())
    db.create_view("mode_stats", _MODE_STATS_V1.strip())
    db.create_view("model_stats", _MODEL_STATS_V1.strip())


@migration
def m005_run_stopped_by(db: sqlite_utils.Database) -> None:
    """Why a partial run stopped (the cap: "max_iterations (8)") and the notes from its final
    value (e.g. which path answered), as JSON."""
    runs = db.table("runs")
    runs.add_column("stopped_by", str)
    runs.add_column("notes_json", str)


# run_summary v2: v1 plus why a partial run stopped (stopped_by), beside finish_reason.
_RUN_SUMMARY_V2 = _RUN_SUMMARY_V1.replace(
    "  r.finish_reason,\n  r.error\n", "  r.finish_reason,\n  r.stopped_by,\n  r.error\n"
)
# mode_stats v2: v1 plus `partial` (answered, but a cap stopped the run) beside `errors`.
_MODE_STATS_V2 = _MODE_STATS_V1.replace(
    "  sum(r.status = 'error') as errors,\n",
    "  sum(r.status = 'error') as errors,\n  sum(r.status = 'partial') as partial,\n",
)


@migration
def m006_partial_in_views(db: sqlite_utils.Database) -> None:
    """run_summary shows stopped_by; mode_stats counts partial runs per mode."""
    db.create_view("run_summary", _RUN_SUMMARY_V2.strip(), replace=True)
    db.create_view("mode_stats", _MODE_STATS_V2.strip(), replace=True)


# Later migrations of the summary views live in their own module; importing it registers them
# after the ones above. Keep this line last.
from composite_cli.traces import migrations_views  # noqa: E402, F401
