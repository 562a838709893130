"""Maintenance of trace files: merge several into one (without duplicates) and prune old runs.

Like the rest of `composite_cli.traces`, this is where SQL that changes a trace database lives.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

# Tables copied by `merge`, parents before children, with their primary keys.
MERGE_TABLES = (
    ("runs", "id"),
    ("steps", "id"),
    ("eval_runs", "id"),
    ("eval_results", "id"),
    ("call_cache", "key"),
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class TableMerge:
    read: int = 0
    new: int = 0


@dataclass
class MergeReport:
    target: str
    sources: list[str]
    tables: dict[str, TableMerge] = field(default_factory=dict)
    dangling: int = 0  # rows whose foreign key points at a row no merged file has


def _open_source(path: Path) -> sqlite_utils.Database:
    import sqlite_utils

    from composite_cli.traces.store import TraceStoreError

    if not path.is_file():
        raise TraceStoreError(f"no trace database at {path}")
    try:  # read-only: merging never changes a source
        db = sqlite_utils.Database(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True))
        tables = set(db.table_names())
    except sqlite3.Error as exc:
        raise TraceStoreError(f"cannot read {path}: {exc}") from None
    if "runs" not in tables:
        db.conn.close()
        raise TraceStoreError(f"{path} is not a composite trace database (it has no runs table)")
    return db


@contextmanager
def read_source(path: Path) -> Iterator[sqlite_utils.Database]:
    """A trace database opened read-only (a source of a merge: never changed). Raises
    TraceStoreError when it is missing, unreadable or not a trace database."""
    db = _open_source(path)
    try:
        yield db
    finally:
        db.conn.close()


def merge_trace_files(
    sources: list[Path], target: Path, *, skip_eval_runs: Collection[str] = ()
) -> MergeReport:
    """Copy runs, steps, eval runs, eval results and cached calls from `sources` into `target`.

    Rows are keyed by id: merging the same file twice adds nothing, and when a row is in several
    files the last file given wins (a run still `running` in an older copy is updated).
    `skip_eval_runs`: eval runs not copied, nor their results (`composite eval merge` writes one
    eval in place of its shards)."""
    from composite_cli.traces.store import TraceStoreError, open_database

    for source in sources:
        # the same file under another name too (a symlink, a hard link): sources are never written
        if source.resolve() == target.resolve() or (
            source.exists() and target.exists() and source.samefile(target)
        ):
            raise TraceStoreError(f"{source} is the target of the merge; give another --into file")
    skip = set(skip_eval_runs)
    skip_key = {"eval_runs": "id", "eval_results": "eval_run_id"}
    opened = [_open_source(s) for s in sources]
    report = MergeReport(str(target), [str(s) for s in sources])
    out = open_database(target)
    try:
        # Files are copied table by table in batches, so a child row can arrive before its parent.
        out.conn.execute("PRAGMA foreign_keys=OFF")
        for name, pk in MERGE_TABLES:
            stats = report.tables.setdefault(name, TableMerge())
            table = out.table(name)
            before = table.count
            columns = set(table.columns_dict)
            for src in opened:
                if name not in src.table_names():
                    continue
                key = skip_key.get(name)
                rows = (
                    {k: v for k, v in row.items() if k in columns}
                    for row in src.table(name).rows
                    if key is None or row.get(key) not in skip
                )
                with out.conn:
                    table.upsert_all(rows, pk=pk, batch_size=500)
                stats.read += src.table(name).count
            stats.new = table.count - before
        report.dangling = len(out.conn.execute("PRAGMA foreign_key_check").fetchall())
    except sqlite3.Error as exc:
        raise TraceStoreError(f"merging into {target} failed: {exc}") from None
    finally:
        out.conn.close()
        for src in opened:
            src.conn.close()
    return report


def insert_eval_run(
    target: Path, run: dict[str, Any], results: list[dict[str, Any]], *, complete_at: int
) -> tuple[int, str]:
    """Write one eval run and its results into `target` in one transaction, replacing rows with the
    same ids (so writing it again changes nothing). Columns the table lacks are left out. Returns
    the eval's results in `target` and its status: `done` once it holds `complete_at` results (a
    `--resume` in `target` may have finished what `run` left; written again, it stays finished)."""
    from composite_cli.traces.store import TraceStoreError, open_database

    out = open_database(target)
    try:
        run_columns = set(out.table("eval_runs").columns_dict)
        result_columns = set(out.table("eval_results").columns_dict)
        with out.conn:
            before = next(out.table("eval_runs").rows_where("id = ?", [run["id"]]), None)
            row = {k: v for k, v in run.items() if k in run_columns}
            out.table("eval_runs").upsert(row, pk="id")
            out.table("eval_results").upsert_all(
                ({k: v for k, v in r.items() if k in result_columns} for r in results),
                pk="id",
                batch_size=500,
            )
            held = out.table("eval_results").count_where("eval_run_id = ?", [run["id"]])
            if held >= complete_at and row.get("status") != "done":
                finished = before.get("finished_at") if before and before.get("status") == "done" else None
                row.update(status="done", finished_at=finished or row.get("finished_at"))
                out.table("eval_runs").update(row["id"], {k: row[k] for k in ("status", "finished_at")})
        return held, str(row.get("status"))
    except sqlite3.Error as exc:
        raise TraceStoreError(f"writing the merged eval into {target} failed: {exc}") from None
    finally:
        out.conn.close()


def parse_duration(text: str, option: str = "--older-than") -> float:
    """Seconds in a duration like `30d`, `12h`, `90m`, `2w` or `45s` (errors name `option`)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{option} expects a number and a unit (s, m, h, d, w), e.g. 30d; got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# Runs started this recently are never pruned, whatever --older-than says: a server may have
# answered them a moment ago, and their rows may still be on their way to the disk.
DEFAULT_GRACE_S = 3600.0


@dataclass
class PruneReport:
    cutoff: str
    runs: int = 0
    steps: int = 0
    eval_results: int = 0
    eval_runs: int = 0
    dry_run: bool = False
    # Runs started before the cutoff that were kept: still `running` (their process is alive), or
    # part of an eval that is still running (`composite eval --resume` needs their results).
    kept_running: int = 0
    # Runs the cutoff would have taken but that started within the grace period.
    kept_recent: int = 0
    grace_s: float = DEFAULT_GRACE_S
    # On disk: the database file plus its write-ahead log (-wal), which can hold most of the data
    # while another connection is open; the main file alone would show a vacuum "growing" it.
    bytes_before: int | None = None
    bytes_after: int | None = None
    # False when another connection kept the log from being emptied after the vacuum.
    wal_truncated: bool | None = None


def disk_bytes(path: Path) -> int:
    """Bytes a database takes on disk: the file and its write-ahead log, if any."""
    total = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        total += wal.stat().st_size
    return total


def _checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the write-ahead log into the database and empty it; False if a reader prevented it."""
    busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy


# Runs that must stay although they started before the cutoff: still running, or part of an
# eval run that is (opening the database first gave a final status to runs of dead processes).
_LIVE_RUNS = """
select id from runs where status = 'running'
union
select r.run_id from eval_results r join eval_runs e on e.id = r.eval_run_id
  where e.status = 'running' and r.run_id is not null
union
select r.judge_run_id from eval_results r join eval_runs e on e.id = r.eval_run_id
  where e.status = 'running' and r.judge_run_id is not null
"""


def prune_runs(
    path: Path,
    older_than_s: float,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    vacuum: bool = False,
    dry_run: bool = False,
) -> PruneReport:
    """Delete runs created before now − `older_than_s`, their steps and the eval results of those
    runs, then eval runs left with no results. The call cache is kept.

    Never deleted: runs still `running` (or in an eval still running), and runs started within
    `grace_s`; the report counts both."""
    from composite_cli.traces.recorder import iso
    from composite_cli.traces.store import TraceStoreError, open_database

    if not path.is_file():
        raise TraceStoreError(f"no trace database at {path}")
    now = time.time()
    report = PruneReport(cutoff=iso(now - older_than_s), dry_run=dry_run, grace_s=grace_s)
    grace_cutoff = iso(now - grace_s)
    db = open_database(path)  # this gives runs of processes that are gone their final status
    conn = db.conn
    try:
        report.bytes_before = disk_bytes(path)
        conn.execute("begin immediate")
        conn.execute(f"create temp table _live as {_LIVE_RUNS}")
        report.kept_running = conn.execute(
            "select count(*) from runs where created_at < ? and id in (select id from _live)",
            [report.cutoff],
        ).fetchone()[0]
        report.kept_recent = conn.execute(
            "select count(*) from runs where created_at < ? and created_at >= ? "
            "and id not in (select id from _live)",
            [report.cutoff, grace_cutoff],
        ).fetchone()[0]
        conn.execute(
            "create temp table _pruned as select id from runs where created_at < ? and created_at < ? "
            "and id not in (select id from _live)",
            [report.cutoff, grace_cutoff],
        )
        gone = "(select id from _pruned)"
        report.steps = conn.execute(f"delete from steps where run_id in {gone}").rowcount  # noqa: S608
        report.eval_results = conn.execute(f"delete from eval_results where run_id in {gone}").rowcount  # noqa: S608
        conn.execute(f"update eval_results set judge_run_id = null where judge_run_id in {gone}")  # noqa: S608
        report.runs = conn.execute(f"delete from runs where id in {gone}").rowcount  # noqa: S608
        report.eval_runs = conn.execute(
            "delete from eval_runs where created_at < ? and created_at < ? and status != 'running' "
            "and not exists (select 1 from eval_results r where r.eval_run_id = eval_runs.id)",
            [report.cutoff, grace_cutoff],
        ).rowcount
        conn.execute("drop table _pruned")
        conn.execute("drop table _live")
        conn.execute("rollback" if dry_run else "commit")
        if vacuum and not dry_run:
            _checkpoint(conn)  # so the vacuum's own copy is the only thing in the log
            conn.execute("vacuum")
            report.wal_truncated = _checkpoint(conn)
            report.bytes_after = disk_bytes(path)
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("rollback")
        raise TraceStoreError(f"pruning {path} failed: {exc}") from None
    finally:
        conn.close()
    return report
