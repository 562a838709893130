"""Read-only queries over the trace database for front ends (the TUI): recent runs with filters,
a run's step tree, eval runs, dashboard aggregates over a time window, and a cheap change check.

Only SELECTs and PRAGMAs live here; `TraceStore` remains the only code that writes.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composite_cli.percentiles import percentile
from composite_cli.traces.recorder import iso
from composite_cli.traces.store import RunNotFound, TraceStore, TraceStoreError

if TYPE_CHECKING:
    import sqlite_utils

# Step kinds that mean "this request used a tool" (client tool calls are seen in finish_reason).
TOOL_KINDS = ("tool", "think")
RUN_FILTERS = ("mode", "status", "source")
WINDOWS: dict[str, tuple[float, float]] = {
    # name: (length in seconds, bucket size in seconds)
    "1h": (3600.0, 300.0),
    "24h": (86400.0, 3600.0),
    "7d": (7 * 86400.0, 6 * 3600.0),
}
DEPTH_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, None))


def recent_runs(
    store: TraceStore,
    *,
    mode: str | None = None,
    status: str | None = None,
    source: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The newest runs (without their input/output text), optionally filtered."""
    where, args = [], []
    for column, value in (("mode", mode), ("status", status), ("source", source)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    sql = (
        "select id, created_at, mode, source, profile, status, calls, prompt_tokens, "
        "completion_tokens, cost_usd, latency_ms, error from runs"
    )
    if where:  # only fixed clauses are joined; values go in as parameters
        sql += " where " + " and ".join(where)
    sql += " order by created_at desc, id desc limit ?"
    with store.reader() as db:
        return list(db.query(sql, [*args, limit]))


def filter_values(store: TraceStore) -> dict[str, list[str]]:
    """Distinct values of each filterable run column (for the filter pickers)."""
    out: dict[str, list[str]] = {}
    with store.reader() as db:
        for column in RUN_FILTERS:
            sql = f"select distinct {column} from runs where {column} is not null order by 1"  # noqa: S608
            out[column] = [row[0] for row in db.execute(sql).fetchall()]
    return out


@dataclass
class StepNode:
    """One step row and its children, in start order."""

    row: dict[str, Any]
    children: list[StepNode] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.row["id"])


def run_with_steps(store: TraceStore, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run row and its step rows (start order). Raises RunNotFound."""
    run = store.get_run(run_id)
    return run, store.run_steps(run_id)


def step_tree(steps: list[dict[str, Any]]) -> list[StepNode]:
    """Nest step rows by parent_id; roots and children keep start order (offset, then seq)."""
    ordered = sorted(steps, key=lambda s: (s.get("offset_ms") or 0.0, s.get("seq") or 0))
    nodes = {str(s["id"]): StepNode(s) for s in ordered}
    roots: list[StepNode] = []
    for step in ordered:
        node = nodes[str(step["id"])]
        parent = nodes.get(str(step.get("parent_id")))
        (parent.children if parent is not None else roots).append(node)
    return roots


class EvalRunNotFound(RunNotFound):
    """No eval run has this id."""


# What each resolvable table is called in messages, and the error it raises.
_ID_KINDS: dict[str, tuple[str, type[RunNotFound]]] = {
    "runs": ("run", RunNotFound),
    "eval_runs": ("eval run", EvalRunNotFound),
}
LATEST = "latest"
_CANDIDATES = 5  # how many matching ids an ambiguous-prefix error lists


def resolve_id(db: sqlite_utils.Database, table: str, ref: str, where: Path | str | None = None) -> str:
    """The full id in `table` ("runs" or "eval_runs") named by `ref`: the id itself, a unique prefix
    of one, or `latest` (the newest). This is the one resolver every front end uses (`traces show`,
    `traces export`, `tui --trace`, `eval report/compare/--resume`). `db` is an open connection
    (`TraceStore.reader()`); `where` (the file) only goes into messages. A `%`, `_` or `\\` in `ref`
    matches itself, and case counts. Raises RunNotFound (EvalRunNotFound for eval runs), listing
    the candidates when a prefix is ambiguous, or TraceStoreError when the file is not a trace
    database."""
    what, error = _ID_KINDS[table]
    in_file = f" in {where}" if where else ""
    ref = ref.strip()
    if not ref:
        raise error(f"give a {what} id, a unique prefix of one, or `{LATEST}`")
    try:
        found = _matching_ids(db, table, ref)
    except sqlite3.Error as exc:
        source = f"from {where}" if where else "from the trace database"
        raise TraceStoreError(f"cannot read {what}s {source}: {exc}") from exc
    if len(found) == 1:
        return found[0]
    if not found:
        if ref == LATEST:
            raise error(f"no {what}s recorded yet{in_file}")
        raise error(f"no {what} with id {ref!r}{in_file}")
    shown = ", ".join(found[:_CANDIDATES]) + (", ..." if len(found) > _CANDIDATES else "")
    raise error(
        f"ambiguous {what} id prefix {ref!r}: several {what}s start with it ({shown}); give more characters"
    )


def _matching_ids(db: sqlite_utils.Database, table: str, ref: str) -> list[str]:
    """The ids `ref` names: [the id] on an exact match, else the newest (for `latest`), else the
    ids starting with `ref`, newest first (at most _CANDIDATES + 1)."""
    # table names come from _ID_KINDS, never from input
    if db.execute(f"select 1 from {table} where id = ?", [ref]).fetchone():  # noqa: S608
        return [ref]
    if ref == LATEST:
        sql = f"select id from {table} order by created_at desc, id desc limit 1"  # noqa: S608
        return [str(r[0]) for r in db.execute(sql).fetchall()]
    # a plain comparison, not LIKE: `%`, `_` and `\` in `ref` are characters, and case counts
    sql = (
        f"select id from {table} where substr(id, 1, ?) = ? "  # noqa: S608
        "order by created_at desc, id desc limit ?"
    )
    return [str(r[0]) for r in db.execute(sql, [len(ref), ref, _CANDIDATES + 1]).fetchall()]


def find_run_id(store: TraceStore, ref: str) -> str:
    """The full id of the run named by `ref` (id, unique prefix or `latest`). Raises RunNotFound."""
    with store.reader() as db:
        return resolve_id(db, "runs", ref, store.path)


def find_eval_run_id(store: TraceStore, ref: str) -> str:
    """The full id of the eval run named by `ref` (id, unique prefix or `latest`).
    Raises EvalRunNotFound."""
    with store.reader() as db:
        return resolve_id(db, "eval_runs", ref, store.path)


def eval_runs(store: TraceStore, limit: int = 50) -> list[dict[str, Any]]:
    """Eval runs, newest first, with how many results each has."""
    with store.reader() as db:
        return list(
            db.query(
                "select e.id, e.created_at, e.file, e.modes, e.profile, e.status, e.cases, "
                "count(r.id) as results from eval_runs e left join eval_results r on r.eval_run_id = e.id "
                "group by e.id order by e.created_at desc, e.id desc limit ?",
                [limit],
            )
        )


# -- dashboard ----------------------------------------------------------------------------------


@dataclass
class ModeStats:
    mode: str
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    tokens_per_request: float
    cost_per_request: float | None  # None when any price is unknown
    tool_fraction: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class ModelStats:
    model: str
    calls: int
    requests: int
    tokens: int
    cost_usd: float  # known prices only
    unpriced_calls: int
    cost_share: float

    @property
    def tokens_per_request(self) -> float:
        return self.tokens / self.requests if self.requests else 0.0

    @property
    def cost_per_request(self) -> float:
        return self.cost_usd / self.requests if self.requests else 0.0


@dataclass
class Dashboard:
    """Aggregates over the runs created in [since, until)."""

    window: str
    since: str
    until: str
    requests: int
    errors: int
    tool_requests: int
    cost_usd: float
    bucket_labels: list[str]
    requests_by_mode: dict[str, list[int]]  # mode → requests per bucket
    modes: list[ModeStats]
    models: list[ModelStats]  # most expensive first
    depth: list[tuple[str, int]]  # internal calls per request: (bin label, requests)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

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
    fmt = "%H:%M" if bucket < 86400 else "%m-%d"
    if bucket >= 3600 * 6:
        fmt = "%m-%d %H"
    return time.strftime(fmt, time.gmtime(ts))


def _depth_label(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def dashboard(store: TraceStore, window: str = "24h", *, now: float | None = None) -> Dashboard:
    """Requests, latency, tokens, cost, depth, tool use and errors over the last `window`."""
    length, bucket = WINDOWS[window]
    until_ts = time.time() if now is None else now
    since_ts = until_ts - length
    since, until = iso(since_ts), iso(until_ts)
    with store.reader() as db:
        runs = list(
            db.query(
                "select id, created_at, mode, status, latency_ms, calls, prompt_tokens, completion_tokens, "
                "cost_usd, finish_reason from runs where created_at >= ? and created_at < ?",
                [since, until],
            )
        )
        tooled = {
            row[0]
            for row in db.execute(
                "select distinct s.run_id from steps s join runs r on r.id = s.run_id "
                "where r.created_at >= ? and r.created_at < ? and s.kind in (?, ?)",
                [since, until, *TOOL_KINDS],
            ).fetchall()
        }
        models = list(
            db.query(
                "select s.model, count(*) as calls, count(distinct s.run_id) as requests, "
                "sum(coalesce(s.prompt_tokens, 0) + coalesce(s.completion_tokens, 0)) as tokens, "
                "sum(coalesce(s.cost_usd, 0)) as cost, sum(s.cost_usd is null) as unpriced "
                "from steps s join runs r on r.id = s.run_id "
                "where s.kind = 'llm' and r.created_at >= ? and r.created_at < ? "
                "group by s.model order by cost desc, calls desc",
                [since, until],
            )
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
    mode_stats = [_mode_stats(mode, rows, tooled) for mode, rows in sorted(by_mode.items())]
    total_cost = sum(float(m["cost"] or 0) for m in models)
    model_stats = [
        ModelStats(
            model=str(m["model"]),
            calls=int(m["calls"]),
            requests=int(m["requests"]),
            tokens=int(m["tokens"] or 0),
            cost_usd=float(m["cost"] or 0),
            unpriced_calls=int(m["unpriced"] or 0),
            cost_share=float(m["cost"] or 0) / total_cost if total_cost else 0.0,
        )
        for m in models
    ]
    depth = []
    for low, high in DEPTH_BINS:
        count = sum(
            1 for r in runs if (r["calls"] or 0) >= low and (high is None or (r["calls"] or 0) <= high)
        )
        depth.append((_depth_label(low, high), count))
    return Dashboard(
        window=window,
        since=since,
        until=until,
        requests=len(runs),
        errors=sum(1 for r in runs if r["status"] == "error"),
        tool_requests=sum(1 for r in runs if r["id"] in tooled),
        cost_usd=total_cost,
        bucket_labels=labels,
        requests_by_mode=dict(sorted(series.items())),
        modes=mode_stats,
        models=model_stats,
        depth=depth,
    )


def _mode_stats(mode: str, rows: list[dict[str, Any]], tooled: set[str]) -> ModeStats:
    latencies = [float(r["latency_ms"]) for r in rows if r["latency_ms"] is not None and r["status"] == "ok"]
    costs = [r["cost_usd"] for r in rows if r["status"] != "running"]
    tokens = [int(r["prompt_tokens"] or 0) + int(r["completion_tokens"] or 0) for r in rows]
    return ModeStats(
        mode=mode,
        requests=len(rows),
        errors=sum(1 for r in rows if r["status"] == "error"),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        tokens_per_request=sum(tokens) / len(rows),
        cost_per_request=None
        if not costs or any(c is None for c in costs)
        else sum(float(c) for c in costs) / len(costs),
        tool_fraction=sum(1 for r in rows if r["id"] in tooled) / len(rows),
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
