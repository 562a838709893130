"""Append-only migrations of the summary views (registered by `migrations.py`, after its own).

Never edit a released migration: add a new function here (or in `migrations.py`)."""

from __future__ import annotations

import sqlite_utils

from composite_cli.traces.migrations import _MODE_STATS_V2, _MODEL_STATS_V1, migration

# mode_stats v3: v2 plus `unpriced_runs`, the finished runs with model calls whose cost is unknown
# (a model without a price): `cost_usd` sums the known costs only, and now says how many it missed.
_MODE_STATS_V3 = _MODE_STATS_V2.replace(
    "  sum(r.cost_usd) as cost_usd,\n",
    "  sum(r.cost_usd) as cost_usd,\n"
    "  sum(r.cost_usd is null and coalesce(r.calls, 0) > 0 and r.status != 'running') as unpriced_runs,\n",
)
# model_stats v2: v1 plus `unpriced_calls`, the answered calls whose cost is unknown, and
# `unpriced_runs`, the runs with such a call.
_MODEL_STATS_V2 = _MODEL_STATS_V1.replace(
    "  sum(s.cost_usd) as cost_usd,\n",
    "  sum(s.cost_usd) as cost_usd,\n"
    "  sum(s.cost_usd is null and s.status = 'ok') as unpriced_calls,\n"
    "  count(distinct case when s.cost_usd is null and s.status = 'ok' then s.run_id end)"
    " as unpriced_runs,\n",
)


@migration
def m007_unpriced_in_views(db: sqlite_utils.Database) -> None:
    """mode_stats counts unpriced runs; model_stats counts unpriced calls and their runs."""
    db.create_view("mode_stats", _MODE_STATS_V3.strip(), replace=True)
    db.create_view("model_stats", _MODEL_STATS_V2.strip(), replace=True)


# mode_stats v4: ONE definition of the per-mode figures, which the TUI dashboard and
# `/composite/metrics/summary` read through `MODE_STATS_SQL` (traces/reader.py narrows `scope`
# to a time window and a source), so the three cannot disagree:
# - p50/p95 latency: answered runs only (status ok or partial) with a latency; an error's or a
#   cancellation's latency is the time to fail, not to answer. Linear interpolation between order
#   statistics written exactly as `composite_cli.percentiles.percentile` writes it (from the
#   nearer end), rounded to the microsecond (3 decimals of a millisecond).
# - error_rate: runs with status error over finished runs (not running); NULL with none finished.
# - cost_usd: the sum of the known costs; mean_cost_usd their mean (runs whose cost is known);
#   unpriced_runs: finished runs with model calls whose cost is unknown.
# - mean_calls, mean_tokens: over finished runs (a run still running is not a 0-call request).
MODE_STATS_SCOPE = "with scope as (\n  select * from runs\n)"
_MODE_STATS_V4 = """
with scope as (
  select * from runs
),
answered as (
  select mode, latency_ms,
    row_number() over (partition by mode order by latency_ms) - 1 as i,
    count(*) over (partition by mode) as n
  from scope
  where latency_ms is not null and status in ('ok', 'partial')
),
positions as (
  select mode, i, latency_ms, n, (n - 1) * 0.5 as h50, (n - 1) * 0.95 as h95 from answered
),
percentiles as (
  select mode,
    max(case when i = cast(h50 as integer) then latency_ms end) as lo50,
    max(case when i = min(cast(h50 as integer) + 1, n - 1) then latency_ms end) as hi50,
    max(h50 - cast(h50 as integer)) as g50,
    max(case when i = cast(h95 as integer) then latency_ms end) as lo95,
    max(case when i = min(cast(h95 as integer) + 1, n - 1) then latency_ms end) as hi95,
    max(h95 - cast(h95 as integer)) as g95
  from positions
  group by mode
)
select
  r.mode,
  count(*) as requests,
  sum(r.status = 'running') as running,
  sum(r.status = 'ok') as ok,
  sum(r.status = 'partial') as partial,
  sum(r.status = 'error') as errors,
  sum(r.status = 'error') * 1.0 / nullif(sum(r.status != 'running'), 0) as error_rate,
  round(case when p.g50 < 0.5 then p.lo50 + (p.hi50 - p.lo50) * p.g50
    else p.hi50 - (p.hi50 - p.lo50) * (1.0 - p.g50) end, 3) as p50_latency_ms,
  round(case when p.g95 < 0.5 then p.lo95 + (p.hi95 - p.lo95) * p.g95
    else p.hi95 - (p.hi95 - p.lo95) * (1.0 - p.g95) end, 3) as p95_latency_ms,
  round(avg(case when r.status != 'running' then coalesce(r.calls, 0) end), 2) as mean_calls,
  sum(coalesce(r.prompt_tokens, 0)) as prompt_tokens,
  sum(coalesce(r.completion_tokens, 0)) as completion_tokens,
  sum(coalesce(r.prompt_tokens, 0) + coalesce(r.completion_tokens, 0)) as tokens,
  round(avg(case when r.status != 'running'
    then coalesce(r.prompt_tokens, 0) + coalesce(r.completion_tokens, 0) end), 1) as mean_tokens,
  sum(r.cost_usd) as cost_usd,
  avg(r.cost_usd) as mean_cost_usd,
  sum(r.cost_usd is null and coalesce(r.calls, 0) > 0 and r.status != 'running') as unpriced_runs
from scope r
left join percentiles p on p.mode = r.mode
group by r.mode
"""
# The newest definition: what the reader runs (narrowed) and the view holds (whole).
MODE_STATS_SQL = _MODE_STATS_V4


@migration
def m008_one_mode_stats(db: sqlite_utils.Database) -> None:
    """mode_stats is the one definition of per-mode latency, error rate and cost (see above)."""
    db.create_view("mode_stats", _MODE_STATS_V4.strip(), replace=True)


# The newest per-model definition (model_stats v2, m007): what the reader runs, narrowed to the
# steps of the runs in a window (MODEL_STATS_SCOPE is where it narrows), and the view holds whole.
# An unpriced call is an answered call (status ok) whose cost is unknown; a failed call is not.
MODEL_STATS_SCOPE = "where s.kind = 'llm'\n"
MODEL_STATS_SQL = _MODEL_STATS_V2
