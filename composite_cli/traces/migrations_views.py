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
