"""`composite eval merge A.db B.db ... --into all.db`: the shards of one eval (`--shard i/N`, run
on N machines) put back together as ONE eval run, whose report is the one a single machine would
have printed.

Everything `traces merge` copies (runs, steps, cached calls, other evals) is copied; the shards'
eval runs are replaced by one eval run holding the whole selection, in its original order, and
every shard's results under that eval's id. Shards that do not belong together (another file,
other modes, scorer, parameters, profile, repeats, filters or shard count; a shard missing, given
twice or still running) are refused in one line before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composite_cli.evals.runner import EvalError, result_id
from composite_cli.evals.session import resume_command
from composite_cli.evals.shard import interleave
from composite_cli.traces import eval_records, maintenance
from composite_cli.traces.eval_records import StoredEval

# What must be equal for shards to be slices of one eval: eval_runs columns, then saved settings.
_SAME_COLUMNS = ("file_hash", "modes", "profile")
_SAME_SETTINGS = ("repeats", "params", "filter", "limit", "scorer", "skip_invalid")
_SAME_SHARD = ("count", "selected")


class ShardsMismatch(EvalError):
    """The databases given to `eval merge` do not hold the complete shards of one eval."""


@dataclass
class EvalMerge:
    """What `merge_shards` did: the eval it wrote and the shards it came from."""

    eval_run_id: str
    target: str
    shards: list[tuple[str, str]]  # (eval id, database), in shard order
    cases: int
    results: int
    status: str
    tables: dict[str, Any]


def merge_shards(sources: list[Path], target: Path) -> EvalMerge:
    """Merge the shard databases `sources` into `target` as one eval (see the module's doc).
    Raises ShardsMismatch (one line) when they are not the complete shards of one eval."""
    found: list[StoredEval] = []
    for source in sources:
        evals = eval_records.sharded_evals(source)
        if not evals:
            raise ShardsMismatch(
                f"{source}: no sharded eval in it (each shard is run with --shard i/N, e.g. "
                "composite eval FILE --shard 1/4 --db shard1.db)"
            )
        found.extend(evals)
    shards = _complete_set(found)
    run, results = _merged(shards)
    tables = maintenance.merge_trace_files(
        sources, target, skip_eval_runs=[s.row["id"] for s in shards]
    ).tables
    complete = run["cases"] * len(_modes(shards[0])) * _repeats(shards[0])
    held, status = maintenance.insert_eval_run(target, run, results, complete_at=complete)
    return EvalMerge(
        eval_run_id=run["id"],
        target=str(target),
        shards=[(str(s.row["id"]), s.path) for s in shards],
        cases=run["cases"],
        results=held,
        status=status,
        tables={name: vars(stats) for name, stats in tables.items()},
    )


def _shard(stored: StoredEval) -> dict[str, Any]:
    shard = stored.settings.get("shard")
    name = f"{stored.path}: eval {stored.row['id']}"
    if not isinstance(shard, dict) or not all(
        isinstance(shard.get(k), int) and not isinstance(shard.get(k), bool)
        for k in ("index", "count", "selected")
    ):
        raise ShardsMismatch(f"{name}: saved settings: shard: expected index, count and selected")
    if not 1 <= shard["index"] <= shard["count"] <= shard["selected"]:
        raise ShardsMismatch(f"{name}: saved settings: shard: {shard!r} is not a valid shard")
    return shard


def _describe(stored: StoredEval) -> str:
    shard = stored.settings["shard"]
    return f"shard {shard['index']}/{shard['count']} (eval {stored.row['id']} in {stored.path})"


def _complete_set(found: list[StoredEval]) -> list[StoredEval]:
    """The shards in order 1..N, checked to be the complete slices of one eval."""
    for stored in found:
        _shard(stored)
    first = found[0]
    for other in found[1:]:
        for column in _SAME_COLUMNS:
            if other.row.get(column) != first.row.get(column):
                raise _mismatch(first, other, column, first.row.get(column), other.row.get(column))
        for key in _SAME_SETTINGS:
            if other.settings.get(key) != first.settings.get(key):
                raise _mismatch(first, other, key, first.settings.get(key), other.settings.get(key))
        for key in _SAME_SHARD:
            mine, theirs = first.settings["shard"][key], other.settings["shard"][key]
            if mine != theirs:
                what = "shard count" if key == "count" else "number of selected cases"
                raise _mismatch(first, other, what, mine, theirs)
    count = first.settings["shard"]["count"]
    by_index: dict[int, StoredEval] = {}
    for stored in found:
        index = stored.settings["shard"]["index"]
        if index in by_index:
            raise ShardsMismatch(
                f"shard {index}/{count} given twice: {_describe(by_index[index])} and {_describe(stored)}; "
                "give each shard's database once (one eval per shard)"
            )
        by_index[index] = stored
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in by_index]
    if missing:
        raise ShardsMismatch(
            f"missing shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} of the eval of "
            f"{first.row.get('file')}: give the database of every shard"
        )
    shards = [by_index[i] for i in range(1, count + 1)]
    selected = first.settings["shard"]["selected"]
    for index, stored in enumerate(shards, 1):
        ids = stored.settings.get("case_ids")
        expected = len(range(index - 1, selected, count))
        if not isinstance(ids, list) or len(ids) != expected or not all(isinstance(i, str) for i in ids):
            raise ShardsMismatch(
                f"{_describe(stored)}: its saved selection is not shard {index}/{count} of "
                f"{selected} cases ({expected} cases expected)"
            )
        if stored.row.get("status") == "running":
            raise ShardsMismatch(
                f"{_describe(stored)} is still running, or its process was killed: let it finish, or "
                f"finish it with {resume_command(str(stored.row['id']), stored.path)}"
            )
    return shards


def _mismatch(first: StoredEval, other: StoredEval, what: str, mine: Any, theirs: Any) -> ShardsMismatch:
    def show(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        return text[:12] if what == "file_hash" and isinstance(text, str) else text

    return ShardsMismatch(
        f"{_describe(other)} is not a shard of the same eval as {_describe(first)}: "
        f"{what} differs ({show(mine)} vs {show(theirs)})"
    )


def _modes(stored: StoredEval) -> list[str]:
    if not all(isinstance(m, str) for m in stored.modes):
        raise ShardsMismatch(f"{_describe(stored)}: saved modes: expected a list of mode names")
    return list(stored.modes)


def _repeats(stored: StoredEval) -> int:
    repeats = stored.settings.get("repeats", 1)
    return repeats if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats >= 1 else 1


def _bad_result(row: dict[str, Any], cases: set[str], modes: list[str], repeats: int) -> str | None:
    """What is wrong with a shard's result row (a database can come from anywhere), or None."""
    if row.get("case_id") not in cases:
        return f"case_id: {row.get('case_id')!r} is not in this shard's selection"
    if row.get("mode") not in modes:
        return f"mode: {row.get('mode')!r} is not one of the eval's modes ({', '.join(modes)})"
    repeat = row.get("repeat")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 0 <= repeat < repeats:
        return f"repeat: expected a whole number from 0 to {repeats - 1}, got {repeat!r}"
    return None


def merged_eval_id(shard_ids: list[str]) -> str:
    """The merged eval's id: from its shards' ids (merging the same shards again rewrites the same
    eval), shaped like any id (`m` and a digest where the process part goes), and sorting with ids
    made when the first shard started."""
    digest = hashlib.sha256("\n".join(sorted(shard_ids)).encode()).hexdigest()
    return f"{min(shard_ids).split('-')[0]}-m{digest[:13]}"


def _merged(shards: list[StoredEval]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one eval run the shards make, and their results under its id."""
    first = shards[0]
    eval_run_id = merged_eval_id([str(s.row["id"]) for s in shards])
    settings = {k: v for k, v in first.settings.items() if k != "shard"}
    settings["case_ids"] = interleave([s.settings["case_ids"] for s in shards])
    settings["merged_from"] = [s.row["id"] for s in shards]
    finished = [s.row.get("finished_at") for s in shards]
    run = {
        "id": eval_run_id,
        "created_at": min(str(s.row["created_at"]) for s in shards),
        "finished_at": None if None in finished else max(str(f) for f in finished),
        "file": first.row["file"],
        "file_hash": first.row["file_hash"],
        "modes": first.row["modes"],
        "profile": first.row["profile"],
        "settings": json.dumps(settings),
        "status": "done" if all(s.row.get("status") == "done" for s in shards) else "interrupted",
        "cases": first.settings["shard"]["selected"],
        "pid": None,
    }
    results = []
    modes = _modes(first)
    repeats = _repeats(first)
    for stored in shards:
        own = set(stored.settings["case_ids"])
        for row in stored.results:
            problem = _bad_result(row, own, modes, repeats)
            if problem:
                raise ShardsMismatch(f"{_describe(stored)}: result {row.get('id')!r}: {problem}")
            merged = dict(row)
            merged["id"] = result_id(eval_run_id, str(row["case_id"]), str(row["mode"]), int(row["repeat"]))
            merged["eval_run_id"] = eval_run_id
            results.append(merged)
    return run, results
