"""The numbers behind `/composite/metrics/summary`: SELECTs over a trace store's reader connection.

Per mode: requests, errors, partial runs (a cap stopped them; by cap in `stopped_by`), p50/p95
latency, tokens, cost and calls per request. Per underlying
model (steps with kind='llm'): calls, errors, tokens and cost. Costs stay `None` when no price
was known, never a made-up 0.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from composite_cli.evals.stats import p50, p95
from composite_cli.runner import stop_reason
from composite_cli.traces.recorder import iso
from composite_cli.traces.store import TraceStore, TraceStoreError

_RUNS = (
    "select mode, status, stopped_by, latency_ms, prompt_tokens, completion_tokens, cost_usd, calls "
    "from runs where created_at >= ? and (? is null or source = ?)"
)
_MODELS = (
    "select s.model as model, count(*) as calls, "
    "sum(case when s.status = 'error' then 1 else 0 end) as errors, "
    "coalesce(sum(s.prompt_tokens), 0) as prompt_tokens, "
    "coalesce(sum(s.completion_tokens), 0) as completion_tokens, "
    "sum(s.cost_usd) as cost_usd, count(s.cost_usd) as priced_calls "
    "from steps s join runs r on r.id = s.run_id "
    "where s.kind = 'llm' and r.created_at >= ? and (? is null or r.source = ?) "
    "group by s.model order by calls desc, s.model"
)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _mode_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [r for r in rows if r["status"] != "running"]
    latencies = [float(r["latency_ms"]) for r in finished if r["latency_ms"] is not None]
    prompt = sum(r["prompt_tokens"] or 0 for r in finished)
    completion = sum(r["completion_tokens"] or 0 for r in finished)
    costs = [float(r["cost_usd"]) for r in finished if r["cost_usd"] is not None]
    partial = [r for r in finished if r["status"] == "partial"]
    return {
        "requests": len(rows),
        "running": len(rows) - len(finished),
        "errors": sum(1 for r in finished if r["status"] == "error"),
        # answered, but a cap (iterations, deadline, budget...) stopped the run early
        "partial": len(partial),
        "stopped_by": dict(Counter(stop_reason(r["stopped_by"]) for r in partial)),
        "latency_ms": {"p50": _round(p50(latencies)), "p95": _round(p95(latencies))},
        "tokens": {
            "prompt": prompt,
            "completion": completion,
            "per_request": _round((prompt + completion) / len(finished)) if finished else None,
        },
        "cost_usd": {
            "total": sum(costs) if costs else None,
            "per_request": _mean(costs),
            "unpriced_requests": len(finished) - len(costs),
        },
        "calls_per_request": _round(_mean([float(r["calls"] or 0) for r in finished])),
    }


def summary(store: TraceStore, last_hours: float, source: str | None = "serve") -> dict[str, Any]:
    """Per-mode and per-model figures for runs created in the last `last_hours` hours."""
    since = iso(time.time() - last_hours * 3600)
    args = [since, source, source]
    out: dict[str, Any] = {"since": since, "last_hours": last_hours, "source": source or "all", "modes": {}}
    try:
        with store.reader() as db:
            runs = list(db.query(_RUNS, args))
            models = list(db.query(_MODELS, args))
    except TraceStoreError:
        out["models"] = {}
        return out  # no database yet: nothing has been served
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for row in runs:
        by_mode.setdefault(row["mode"], []).append(row)
    out["modes"] = {mode: _mode_summary(rows) for mode, rows in sorted(by_mode.items())}
    out["models"] = {
        str(m["model"]): {
            "calls": m["calls"],
            "errors": m["errors"],
            "tokens": {"prompt": m["prompt_tokens"], "completion": m["completion_tokens"]},
            "cost_usd": m["cost_usd"] if m["priced_calls"] else None,
            "unpriced_calls": m["calls"] - m["priced_calls"],
        }
        for m in models
    }
    return out
