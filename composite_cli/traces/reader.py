"""TraceReader: every query front ends make over the trace database, in one class.

Resolve a run or eval-run id (`latest`, a unique prefix), list runs with a filter, a run with its
step tree, export runs, eval runs and their results, and per-mode and per-model statistics over a
time window. Front ends (CLI, TUI, HTTP API, eval report) call it and only render. Driver errors
come out as TraceStoreError (the store's `reader()` wraps them); unknown ids as RunNotFound /
EvalRunNotFound. Only SELECTs live here; `TraceStore` writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composite_cli.traces.migrations_views import (
    MODE_STATS_SCOPE,
    MODE_STATS_SQL,
    MODEL_STATS_SCOPE,
    MODEL_STATS_SQL,
)
from composite_cli.traces.steptree import StepNode, step_tree
from composite_cli.traces.store import RunNotFound, TraceStore, TraceStoreError

if TYPE_CHECKING:
    import sqlite_utils

RUN_FILTERS = ("mode", "status", "source")
# What a list of runs shows (not the whole input/output text, which can be megabytes: the input's
# first 300 characters as `input_head`).
# A run's answered model calls without a price (a cost shown as "n unpriced", never a made-up 0).
_UNPRICED_CALLS = (
    "(select count(*) from steps s where s.run_id = runs.id and s.kind = 'llm' and s.status = 'ok' "
    "and s.cost_usd is null) as unpriced_calls"
)
_BRIEF_RUN_COLUMNS = (
    "id, created_at, mode, source, profile, status, calls, prompt_tokens, "
    "completion_tokens, cost_usd, latency_ms, error, substr(input, 1, 300) as input_head, " + _UNPRICED_CALLS
)
_STEPS_SQL = "select * from steps where run_id = ? order by offset_ms, seq"


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
    of one, or `latest` (the newest). `db` is an open connection (`TraceStore.reader()`); `where`
    (the file) only goes into messages. A `%`, `_` or `\\` in `ref` matches itself, and case
    counts. Raises RunNotFound (EvalRunNotFound for eval runs), listing the candidates when a
    prefix is ambiguous, or TraceStoreError when the file is not a trace database."""
    import sqlite3

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


def _run_filter(
    mode: str | None, status: str | None, source: str | None, search: str | None = None
) -> tuple[str, list[Any]]:
    """` where ...` over runs for the given filters (fixed clauses; values as parameters).
    `search` keeps the runs whose input or output contains it (case-insensitive for ASCII; `%`
    and `_` match themselves)."""
    where, args = [], []
    for column, value in (("mode", mode), ("status", status), ("source", source)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    text = (search or "").strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(input like ? escape '\\' or output like ? escape '\\')")
        args.extend([pattern, pattern])
    return (" where " + " and ".join(where)) if where else "", args


def _window(since: str | None, until: str | None, source: str | None) -> tuple[str, list[Any]]:
    """A filter of runs by creation time [since, until) and source (None: no bound / any)."""
    sql = "(? is null or created_at >= ?) and (? is null or created_at < ?) and (? is null or source = ?)"
    return sql, [since, since, until, until, source, source]


class TraceReader:
    """Read-only queries over one trace database (each call opens its own connection)."""

    def __init__(self, store: TraceStore | str | Path):
        self.store = store if isinstance(store, TraceStore) else TraceStore(store)

    @property
    def path(self) -> Path:
        return self.store.path

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.store.reader() as db:
            return list(db.query(sql, params or []))

    # -- ids ----------------------------------------------------------------------------------
    def run_id(self, ref: str) -> str:
        """The full id of the run named by `ref` (id, unique prefix or `latest`)."""
        with self.store.reader() as db:
            return resolve_id(db, "runs", ref, self.path)

    def eval_run_id(self, ref: str) -> str:
        """The full id of the eval run named by `ref` (id, unique prefix or `latest`)."""
        with self.store.reader() as db:
            return resolve_id(db, "eval_runs", ref, self.path)

    # -- runs ---------------------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any]:
        """A run's row (a full id). Raises RunNotFound."""
        rows = self._rows("select * from runs where id = ?", [run_id])
        if not rows:
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
        return rows[0]

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        """A run's step rows in start order (offset, then seq)."""
        return self._rows(_STEPS_SQL, [run_id])

    def run_with_steps(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A run's row and its step rows (start order), read together. Raises RunNotFound."""
        with self.store.reader() as db:
            runs = list(db.query("select * from runs where id = ?", [run_id]))
            if not runs:
                raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
            return runs[0], list(db.query(_STEPS_SQL, [run_id]))

    def trace(self, ref: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[StepNode]]:
        """The run `ref` names (id, prefix or `latest`), its step rows and its step tree."""
        run, steps = self.run_with_steps(self.run_id(ref))
        return run, steps, step_tree(steps)

    def runs(
        self,
        *,
        mode: str | None = None,
        status: str | None = None,
        source: str | None = None,
        search: str | None = None,
        limit: int = 20,
        offset: int = 0,
        brief: bool = False,
    ) -> list[dict[str, Any]]:
        """The newest runs, optionally filtered (`search`: text in the input or output), `limit`
        of them after skipping `offset`; `brief` leaves out the input/output text (keeps the
        input's start as `input_head`)."""
        where, args = _run_filter(mode, status, source, search)
        columns = _BRIEF_RUN_COLUMNS if brief else "*"
        sql = f"select {columns} from runs{where} order by created_at desc, id desc limit ? offset ?"  # noqa: S608
        return self._rows(sql, [*args, limit, max(0, offset)])

    def count_runs(
        self,
        *,
        mode: str | None = None,
        status: str | None = None,
        source: str | None = None,
        search: str | None = None,
    ) -> int:
        """How many runs match the filters of `runs`."""
        where, args = _run_filter(mode, status, source, search)
        with self.store.reader() as db:
            return int(db.execute(f"select count(*) from runs{where}", args).fetchone()[0])  # noqa: S608

    def filter_values(self) -> dict[str, list[str]]:
        """Distinct values of each filterable run column (for filter pickers)."""
        out: dict[str, list[str]] = {}
        with self.store.reader() as db:
            for column in RUN_FILTERS:
                sql = f"select distinct {column} from runs where {column} is not null order by 1"  # noqa: S608
                out[column] = [row[0] for row in db.execute(sql).fetchall()]
        return out

    def export(
        self,
        run_ids: list[str],
        *,
        mode: str | None = None,
        status: str | None = None,
        source: str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Runs (all columns) each with its `steps`, oldest first: the newest `limit` matching the
        filters (and `run_ids`, full ids, when given). Reads lazily, one run at a time."""
        where, args = _run_filter(mode, status, source)
        if run_ids:
            marks = ", ".join("?" for _ in run_ids)
            where = (where + " and" if where else " where") + f" id in ({marks})"
            args = [*args, *run_ids]
        sql = f"select id from runs{where} order by created_at desc"  # noqa: S608 - fixed clauses
        if limit is not None:
            sql += " limit ?"
            args = [*args, limit]
        with self.store.reader() as db:
            for (run_id,) in reversed(db.execute(sql, args).fetchall()):
                row = next(iter(db.query("select * from runs where id = ?", [run_id])))
                row["steps"] = list(db.query(_STEPS_SQL, [run_id]))
                yield row

    # -- eval runs ----------------------------------------------------------------------------
    def eval_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Eval runs, newest first, with how many results each has."""
        return self._rows(
            "select e.id, e.created_at, e.file, e.modes, e.profile, e.status, e.cases, "
            "count(r.id) as results from eval_runs e left join eval_results r on r.eval_run_id = e.id "
            "group by e.id order by e.created_at desc, e.id desc limit ?",
            [limit],
        )

    def eval_run_with_results(self, eval_run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """An eval run's row and its results (by case), each result with its run's `run_status`
        (ok, partial, error...) and `stopped_by` (null in databases from before it was recorded).
        Raises EvalRunNotFound."""
        with self.store.reader() as db:
            runs = list(db.query("select * from eval_runs where id = ?", [eval_run_id]))
            if not runs:
                raise EvalRunNotFound(f"no eval run with id {eval_run_id!r} in {self.path}")
            stopped_by = "r.stopped_by" if "stopped_by" in db["runs"].columns_dict else "null"
            sql = (
                f"select e.*, r.status as run_status, {stopped_by} as stopped_by from eval_results e "  # noqa: S608
                "left join runs r on r.id = e.run_id where e.eval_run_id = ? order by e.case_id"
            )
            return runs[0], list(db.query(sql, [eval_run_id]))

    # -- statistics ---------------------------------------------------------------------------
    def mode_stats(
        self, *, since: str | None = None, until: str | None = None, source: str | None = None
    ) -> list[dict[str, Any]]:
        """Per-mode figures (the `mode_stats` view's definition, see traces/migrations_views.py)
        over the runs created in [since, until) from `source` (None: no bound / every source)."""
        where, args = _window(since, until, source)
        scoped = MODE_STATS_SCOPE.replace("select * from runs", f"select * from runs where {where}")  # noqa: S608
        sql = MODE_STATS_SQL.replace(MODE_STATS_SCOPE, scoped, 1) + "order by r.mode"
        return self._rows(sql, args)

    def model_stats(
        self, *, since: str | None = None, until: str | None = None, source: str | None = None
    ) -> list[dict[str, Any]]:
        """Per underlying model (steps with kind 'llm'): the `model_stats` view's definition
        (traces/migrations_views.py) over the steps of the runs created in [since, until) from
        `source`, most calls first. `cost_usd` is None when no call was priced."""
        where, args = _window(since, until, source)
        scoped = f"where s.kind = 'llm' and s.run_id in (select id from runs where {where})\n"  # noqa: S608
        sql = MODEL_STATS_SQL.replace(MODEL_STATS_SCOPE, scoped, 1) + "order by calls desc, s.model"
        return self._rows(sql, args)

    def runs_stopped_by(
        self, *, since: str | None = None, until: str | None = None, source: str | None = None
    ) -> dict[str, list[str | None]]:
        """Per mode, the `stopped_by` (the cap) of each partial run created in [since, until)."""
        where, args = _window(since, until, source)
        out: dict[str, list[str | None]] = {}
        sql = f"select mode, stopped_by from runs where status = 'partial' and {where}"  # noqa: S608
        for row in self._rows(sql, args):
            out.setdefault(str(row["mode"]), []).append(row["stopped_by"])
        return out

    def runs_in_window(self, since: str, until: str) -> list[dict[str, Any]]:
        """The runs created in [since, until): the columns the dashboard buckets and bins."""
        return self._rows(
            "select id, created_at, mode, status, calls, finish_reason, "  # noqa: S608 - a fixed clause
            f"{_UNPRICED_CALLS} from runs where created_at >= ? and created_at < ?",
            [since, until],
        )

    def oldest_run_at(self, since: str, until: str, *, share: float = 1.0) -> str | None:
        """The creation time of the oldest of the newest `share` of the runs created in
        [since, until) (share 1.0: the oldest run; 0.95 leaves out the oldest 5%). None: no run."""
        window = "from runs where created_at >= ? and created_at < ?"
        with self.store.reader() as db:
            count = int(db.execute(f"select count(*) {window}", [since, until]).fetchone()[0])
            if not count:
                return None
            keep = max(1, int(count * share + 0.5))
            row = db.execute(
                f"select created_at {window} order by created_at desc limit 1 offset ?",
                [since, until, keep - 1],
            ).fetchone()
        return None if row is None else str(row[0])

    def runs_with_step_kinds(self, since: str, until: str, kinds: tuple[str, ...]) -> set[str]:
        """Ids of the runs created in [since, until) with a step of one of these kinds."""
        marks = ", ".join("?" for _ in kinds)
        with self.store.reader() as db:
            rows = db.execute(
                "select distinct s.run_id from steps s join runs r on r.id = s.run_id "  # noqa: S608
                f"where r.created_at >= ? and r.created_at < ? and s.kind in ({marks})",
                [since, until, *kinds],
            ).fetchall()
        return {str(row[0]) for row in rows}
