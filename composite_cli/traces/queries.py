"""The TUI dashboard's aggregates over a time window (from TraceReader's queries and the one
per-mode definition, the `mode_stats` view's) and a cheap change check of the database file.

The queries themselves live in traces/reader.py; `TraceStore` remains the only code that writes.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composite_cli.traces.reader import TraceReader
from composite_cli.traces.recorder import iso
from composite_cli.traces.store import TraceStore

# Step kinds that mean "this request used a tool" (client tool calls are seen in finish_reason).
TOOL_KINDS = ("tool", "think")
WINDOWS: dict[str, tuple[float, float]] = {
    # name: (length in seconds, bucket size in seconds)
    "1h": (3600.0, 300.0),
    "24h": (86400.0, 3600.0),
    "7d": (7 * 86400.0, 6 * 3600.0),
}
# "fit": from the oldest of the newest FIT_SHARE of the runs of the last FIT_LOOKBACK seconds to
# now (a few old stragglers do not stretch it), in at most FIT_BUCKETS buckets of the smallest of
# NICE_BUCKETS that fits (so a burst of runs is not one bar at the edge).
FIT = "fit"
FIT_SHARE = 0.95
FIT_LOOKBACK = WINDOWS["7d"][0]
FIT_BUCKETS = 24
NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
WINDOW_NAMES = (FIT, *WINDOWS)
DEPTH_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, None))


# -- dashboard ----------------------------------------------------------------------------------


@dataclass
class ModeStats:
    """One mode's row of the `mode_stats` definition (traces/migrations_views.py), plus tool use."""

    mode: str
    requests: int
    errors: int
    error_rate: float  # errors over finished runs
    p50_ms: float | None  # answered runs (ok, partial)
    p95_ms: float | None
    tokens_per_request: float  # over finished runs
    cost_per_request: float | None  # mean over the runs whose cost is known; None: none known
    unpriced_runs: int  # finished runs with calls whose cost is unknown
    unpriced_calls: int  # those calls (what "n unpriced" counts on every screen)
    tool_fraction: float


@dataclass
class ModelStats:
    model: str
    calls: int
    requests: int
    tokens: int
    cost_usd: float | None  # known prices only; None: no call was priced
    unpriced_calls: int
    cost_share: float

    @property
    def tokens_per_request(self) -> float:
        return self.tokens / self.requests if self.requests else 0.0

    @property
    def cost_per_request(self) -> float | None:
        """The known cost over the requests (None: no call was priced)."""
        if self.cost_usd is None:
            return None
        return self.cost_usd / self.requests if self.requests else 0.0


@dataclass
class Dashboard:
    """Aggregates over the runs created in [since, until)."""

    window: str
    since: str
    until: str
    requests: int
    errors: int
    finished: int  # not running
    tool_requests: int
    cost_usd: float  # the known costs
    unpriced_calls: int  # answered model calls without a price
    bucket_labels: list[str]
    requests_by_mode: dict[str, list[int]]  # mode → requests per bucket
    modes: list[ModeStats]
    models: list[ModelStats]  # most expensive first
    depth: list[tuple[str, int]]  # internal calls per request: (bin label, requests)

    @property
    def error_rate(self) -> float:
        """Errors over finished runs (as per mode)."""
        return self.errors / self.finished if self.finished else 0.0

    @property
    def tool_fraction(self) -> float:
        return self.tool_requests / self.requests if self.requests else 0.0


def _epoch(created_at: str) -> float:
    """ISO 8601 UTC as written by the recorder → epoch seconds."""
    import calendar

    head, _, frac = created_at.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def _bucket_label(ts: float, bucket: float) -> str:
    fmt = "%H:%M:%S" if bucket < 60 else "%H:%M" if bucket < 86400 else "%m-%d"
    if bucket >= 3600 * 6:
        fmt = "%m-%d %H"
    return time.strftime(fmt, time.gmtime(ts))


def _depth_label(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def fit_window(reader: TraceReader, until_ts: float) -> tuple[float, float]:
    """(length, bucket) of the "fit" window: it starts up to a bucket before the oldest of the
    newest FIT_SHARE of the runs of the last FIT_LOOKBACK seconds, with at most FIT_BUCKETS
    buckets (an hour when there is no run)."""
    oldest = reader.oldest_run_at(iso(until_ts - FIT_LOOKBACK), iso(until_ts), share=FIT_SHARE)
    span = max(1.0, until_ts - _epoch(oldest)) if oldest else 3600.0
    bucket = next((float(b) for b in NICE_BUCKETS if span / b < FIT_BUCKETS), float(NICE_BUCKETS[-1]))
    return (int(span // bucket) + 1) * bucket, bucket


def dashboard(store: TraceStore, window: str = FIT, *, now: float | None = None) -> Dashboard:
    """Requests, latency, tokens, cost, depth, tool use and errors over the last `window` (one of
    WINDOW_NAMES; "fit": the span that holds the recent runs)."""
    reader = TraceReader(store)
    until_ts = time.time() if now is None else now
    length, bucket = fit_window(reader, until_ts) if window == FIT else WINDOWS[window]
    since_ts = until_ts - length
    since, until = iso(since_ts), iso(until_ts)
    runs = reader.runs_in_window(since, until)
    tooled = reader.runs_with_step_kinds(since, until, TOOL_KINDS)
    stats = reader.mode_stats(since=since, until=until)
    models = sorted(
        reader.model_stats(since=since, until=until),
        key=lambda m: (-float(m["cost_usd"] or 0), -int(m["calls"])),
    )
    tooled |= {r["id"] for r in runs if r["finish_reason"] == "tool_calls"}
    n_buckets = int(length // bucket)
    first = until_ts - n_buckets * bucket
    labels = [_bucket_label(first + i * bucket, bucket) for i in range(n_buckets)]
    by_mode: dict[str, list[dict[str, Any]]] = defaultdict(list)
    series: dict[str, list[int]] = {}
    for run in runs:
        by_mode[run["mode"]].append(run)
        index = min(n_buckets - 1, max(0, int((_epoch(run["created_at"]) - first) // bucket)))
        series.setdefault(run["mode"], [0] * n_buckets)[index] += 1
    mode_stats = [_mode_stats(row, by_mode[row["mode"]], tooled) for row in stats if row["mode"] in by_mode]
    total_cost = sum(float(m["cost_usd"] or 0) for m in models)
    model_stats = [
        ModelStats(
            model=str(m["model"]),
            calls=int(m["calls"]),
            requests=int(m["runs"]),
            tokens=int(m["tokens"] or 0),
            cost_usd=None if m["cost_usd"] is None else float(m["cost_usd"]),
            unpriced_calls=int(m["unpriced_calls"] or 0),
            cost_share=float(m["cost_usd"] or 0) / total_cost if total_cost else 0.0,
        )
        for m in models
    ]
    depth = []
    for low, high in DEPTH_BINS:
        count = sum(
            1 for r in runs if (r["calls"] or 0) >= low and (high is None or (r["calls"] or 0) <= high)
        )
        depth.append((_depth_label(low, high), count))
    finished = sum(1 for r in runs if r["status"] != "running")
    errors = sum(1 for r in runs if r["status"] == "error")
    return Dashboard(
        window=window,
        since=since,
        until=until,
        requests=len(runs),
        errors=errors,
        finished=finished,
        tool_requests=sum(1 for r in runs if r["id"] in tooled),
        cost_usd=total_cost,
        unpriced_calls=sum(m.unpriced_calls for m in model_stats),
        bucket_labels=labels,
        requests_by_mode=dict(sorted(series.items())),
        modes=mode_stats,
        models=model_stats,
        depth=depth,
    )


def _mode_stats(row: dict[str, Any], runs: list[dict[str, Any]], tooled: set[str]) -> ModeStats:
    """A `mode_stats` row as the dashboard shows it, with the share of its runs that used tools."""
    return ModeStats(
        mode=str(row["mode"]),
        requests=int(row["requests"]),
        errors=int(row["errors"] or 0),
        error_rate=float(row["error_rate"] or 0.0),
        p50_ms=row["p50_latency_ms"],
        p95_ms=row["p95_latency_ms"],
        tokens_per_request=float(row["mean_tokens"] or 0.0),
        cost_per_request=row["mean_cost_usd"],
        unpriced_runs=int(row["unpriced_runs"] or 0),
        unpriced_calls=sum(int(r["unpriced_calls"] or 0) for r in runs),
        tool_fraction=sum(1 for r in runs if r["id"] in tooled) / len(runs) if runs else 0.0,
    )


class ChangeWatcher:
    """Tells cheaply whether the database changed since the last look, whoever wrote it
    (this process or another: `serve`, `eval`, ...). Uses SQLite's `PRAGMA data_version` on one
    long-lived read-only connection; None while the file does not exist."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def token(self) -> tuple[int, int] | None:
        if not self.path.exists():
            self.close()
            return None
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(str(self.path), timeout=5, check_same_thread=False)
                self._conn.execute("PRAGMA query_only = ON")
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            self.close()
            return None
        # the inode tells a recreated file from the old one
        return (self.path.stat().st_ino, int(version))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
