"""The numbers behind `/composite/metrics/summary`, read through TraceReader (no SQL here).

Per mode: the one per-mode definition (the `mode_stats` view's, which the TUI dashboard shows too):
requests, errors and error rate, partial runs (a cap stopped them; by cap in `stopped_by`), p50/p95
latency of the answered runs, tokens, cost and calls per request. Per underlying model (steps with
kind='llm'; the `model_stats` view's definition): calls, errors, tokens and cost, and the answered
calls whose price is unknown. Costs stay `None` when no price was known, never a made-up 0.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from composite_cli.runner import stop_reason
from composite_cli.traces.reader import TraceReader
from composite_cli.traces.recorder import iso
from composite_cli.traces.store import TraceStore, TraceStoreError


def _mode_summary(row: dict[str, Any], stopped_by: list[str | None]) -> dict[str, Any]:
    """A `mode_stats` row (the one per-mode definition: traces/migrations_views.py) as JSON."""
    finished = int(row["requests"]) - int(row["running"] or 0)
    prompt, completion = int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0)
    return {
        "requests": row["requests"],
        "running": row["running"],
        "errors": row["errors"],
        "error_rate": row["error_rate"],  # errors over finished runs
        # answered, but a cap (iterations, deadline, budget...) stopped the run early
        "partial": row["partial"],
        "stopped_by": dict(Counter(stop_reason(reason) for reason in stopped_by)),
        # over answered runs (ok, partial)
        "latency_ms": {"p50": row["p50_latency_ms"], "p95": row["p95_latency_ms"]},
        "tokens": {
            "prompt": prompt,
            "completion": completion,
            "per_request": row["mean_tokens"] if finished else None,
        },
        "cost_usd": {
            "total": row["cost_usd"],
            "per_request": row["mean_cost_usd"],
            "unpriced_requests": row["unpriced_runs"],
        },
        "calls_per_request": row["mean_calls"],
    }


def summary(store: TraceStore, last_hours: float, source: str | None = "serve") -> dict[str, Any]:
    """Per-mode and per-model figures for runs created in the last `last_hours` hours."""
    since = iso(time.time() - last_hours * 3600)
    out: dict[str, Any] = {"since": since, "last_hours": last_hours, "source": source or "all", "modes": {}}
    reader = TraceReader(store)
    try:
        modes = reader.mode_stats(since=since, source=source)
        models = reader.model_stats(since=since, source=source)
        partial = reader.runs_stopped_by(since=since, source=source)
    except TraceStoreError:
        out["models"] = {}
        return out  # no database yet: nothing has been served
    out["modes"] = {str(m["mode"]): _mode_summary(m, partial.get(str(m["mode"]), [])) for m in modes}
    out["models"] = {
        str(m["model"]): {
            "calls": m["calls"],
            "errors": m["errors"],
            "tokens": {"prompt": m["prompt_tokens"] or 0, "completion": m["completion_tokens"] or 0},
            "cost_usd": m["cost_usd"],
            "unpriced_calls": m["unpriced_calls"],
        }
        for m in models
    }
    return out
