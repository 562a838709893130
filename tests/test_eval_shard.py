"""`composite eval --shard i/N` and `composite eval merge`: N machines split one eval, and the merged
databases give the report a single machine would have printed (issue 16)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.evals.shard import BadShard, Shard, interleave, parse_shard

# Deterministic mock answers, no delay: some cases pass, some fail, so the statistics say something.
CONFIG = """
profile: mock
profiles:
  mock:
    "*": {model: openai/gpt-4o-mini, mock_response: "The answer is Paris, 4."}
"""
CASES = [
    {"id": f"c{i:02d}", "input": f"Question {i}?", "expected": expected, "scorer": scorer}
    for i, (expected, scorer) in enumerate(
        [("Paris", "contains"), ("Rome", "contains"), (4, "numeric"), (5, "numeric")] * 3
    )
]


def setup_home(home: Path, cases: list[dict] = CASES) -> None:
    (home / "composite.yaml").write_text(CONFIG, encoding="utf-8")
    (home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def fixed_latencies(db: Path) -> None:
    """Latencies are the one thing two runs of a deterministic mock do not share: set them to a
    function of the case, mode and repeat, in every database, so whole reports can be compared."""
    with sqlite3.connect(db) as conn:
        conn.execute("update eval_results set latency_ms = length(case_id) * 7 + repeat * 3 + length(mode)")
        conn.execute("update eval_results set latency_ms = latency_ms + cast(substr(case_id, 2) as int) * 11")


def report(db: Path, *fmt: str) -> str:
    """The report of the latest eval in `db`, its id and start time blanked (they differ by design)."""
    out = cli("eval", "report", "latest", "--db", str(db), *fmt)
    if "--json" in fmt:
        data = json.loads(out)
        data["eval_run"]["id"] = data["eval_run"]["created_at"] = "-"
        return json.dumps(data, indent=1, sort_keys=True)
    eval_id = json.loads(cli("eval", "list", "--db", str(db), "--json"))[0]["id"]
    return out.replace(eval_id, "EVAL")


def run_eval(db: Path, *extra: str) -> None:
    cli(
        "eval",
        "e.jsonl",
        "-m",
        "direct,moa",
        "--repeats",
        "2",
        "--limit",
        "11",
        "-q",
        "--db",
        str(db),
        *extra,
    )


def test_parse_shard_takes_i_of_n_and_nothing_else():
    assert parse_shard("2/4") == Shard(2, 4)
    assert parse_shard(" 1 / 1 ") == Shard(1, 1)
    for bad in ("0/2", "3/2", "x/y", "1/0", "", "2", "-1/2", "1/2/3", "1.5/2"):
        with pytest.raises(BadShard, match="--shard"):
            parse_shard(bad)


def test_shards_are_balanced_disjoint_and_put_back_in_order():
    items = list(range(11))
    slices = [Shard(i, 4).take(items) for i in range(1, 5)]
    assert sorted(x for s in slices for x in s) == items
    assert {len(s) for s in slices} == {2, 3}
    assert interleave(slices) == items
    with pytest.raises(BadShard, match="--shard 3/12: the selection has 11 cases"):
        Shard(3, 12).take(items)


@pytest.mark.parametrize("bad", ["0/2", "3/2", "x/y"])
def test_a_bad_shard_is_one_line_naming_the_option(isolated_home: Path, bad: str):
    setup_home(isolated_home)
    result = CliRunner().invoke(app, ["eval", "e.jsonl", "--shard", bad])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: --shard expects i/N with 1 ≤ i ≤ N (e.g. 2/4 is the second of four), got '{bad}'"
    ]


def test_sharded_and_merged_gives_the_single_machine_report(isolated_home: Path):
    """The issue's test: 11 cases × 2 modes × 2 repeats, once on one machine and once as 3 shards
    merged; the reports (text, Markdown, JSON: every statistic) are the same."""
    setup_home(isolated_home)
    run_eval(isolated_home / "single.db")
    shards = [isolated_home / f"shard{i}.db" for i in (1, 2, 3)]
    for i, db in enumerate(shards, 1):
        run_eval(db, "--shard", f"{i}/3")
    for db in [isolated_home / "single.db", *shards]:
        fixed_latencies(db)
    # every repeat of a case is in the shard of its case
    per_shard = [
        {r[0] for r in sqlite3.connect(db).execute("select distinct case_id from eval_results")}
        for db in shards
    ]
    assert [sorted(s) for s in per_shard] == [[f"c{i:02d}" for i in range(k, 11, 3)] for k in range(3)]
    out = cli("eval", "merge", *map(str, shards), "--into", "all.db")
    assert "3 shards, 11 cases, 44 results" in out
    merged = isolated_home / "all.db"
    for fmt in (["--json"], ["--markdown"], []):
        assert report(merged, *fmt) == report(isolated_home / "single.db", *fmt)
    # one eval in the merged database, with the whole selection in file order; runs all copied
    evals = json.loads(cli("eval", "list", "--db", "all.db", "--json"))
    assert len(evals) == 1 and evals[0]["status"] == "done" and evals[0]["results"] == 44
    with sqlite3.connect(merged) as conn:
        settings = json.loads(conn.execute("select settings from eval_runs").fetchone()[0])
        assert settings["case_ids"] == [f"c{i:02d}" for i in range(11)] and "shard" not in settings
        runs = conn.execute("select count(*) from runs where source = 'eval'").fetchone()[0]
        assert runs == 44
        dangling = conn.execute("select count(*) from eval_results where run_id not in (select id from runs)")
        assert dangling.fetchone()[0] == 0
    # merging again changes nothing
    cli("eval", "merge", *map(str, shards), "--into", "all.db")
    assert len(json.loads(cli("eval", "list", "--db", "all.db", "--json"))) == 1


def test_shards_that_do_not_belong_together_are_refused_in_one_line(isolated_home: Path):
    setup_home(isolated_home)
    db = {
        name: isolated_home / f"{name}.db" for name in ("s1", "s2", "s3", "other", "modes", "four", "plain")
    }

    def shard(name: str, spec: str, *extra: str, file: str = "e.jsonl") -> None:
        cli("eval", file, "-m", "direct", "--shard", spec, "-q", "--db", str(db[name]), *extra)

    shard("s1", "1/3")
    shard("s2", "2/3")
    shard("s3", "3/3")
    shard("modes", "3/3", "-m", "direct,moa")
    shard("four", "3/4")
    (isolated_home / "f.jsonl").write_text(
        "".join(json.dumps(c) + "\n" for c in CASES[::-1]), encoding="utf-8"
    )
    shard("other", "3/3", file="f.jsonl")
    cli("eval", "e.jsonl", "-m", "direct", "-q", "--db", str(db["plain"]))

    def refused(*names: str) -> str:
        result = CliRunner().invoke(
            app, ["eval", "merge", *(str(db.get(n, n)) for n in names), "--into", "x.db"]
        )
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        return lines[0]

    assert "file_hash differs" in refused("s1", "s2", "other")
    assert "modes differs" in refused("s1", "s2", "modes")
    assert "shard count differs (3 vs 4)" in refused("s1", "s2", "four")
    assert "missing shard 3/3" in refused("s1", "s2")
    assert "shard 2/3 given twice" in refused("s1", "s2", "s2", "s3")
    assert "no sharded eval in it" in refused("s1", "s2", "s3", "plain")
    assert "no trace database at" in refused("s1", "s2", "nope")
    # a database is input like any other: tampered rows are refused by field, never a traceback
    tampered = isolated_home / "tampered.db"
    for sql, expected in (
        ("update eval_runs set settings = json_set(settings, '$.shard.index', '2')", "shard: expected index"),
        ("update eval_results set mode = 'nope' where rowid = 1", "mode: 'nope' is not one of"),
        ("update eval_results set repeat = 7 where rowid = 1", "repeat: expected a whole number from 0 to 0"),
        ("update eval_results set case_id = 'c00' where rowid = 1", "case_id: 'c00' is not in this shard"),
        ("update eval_runs set settings = '{not json'", "unreadable settings or modes"),
    ):
        tampered.unlink(missing_ok=True)
        with sqlite3.connect(db["s2"]) as source, sqlite3.connect(tampered) as conn:
            source.backup(conn)
            conn.execute(sql)
        db["tampered"] = tampered
        assert expected in refused("s1", "tampered", "s3"), sql
    # a shard left `running` (its process killed, the file copied before anything reopened it)
    with sqlite3.connect(db["s3"]) as conn:
        conn.execute("update eval_runs set status = 'running'")
    assert "is still running, or its process was killed" in refused("s1", "s2", "s3")
    assert not (isolated_home / "x.db").exists()  # nothing written by a refused merge


def test_an_interrupted_shard_merges_into_an_interrupted_eval_that_resumes(isolated_home: Path):
    """A shard that stopped early still merges: the eval says `interrupted`, and `--resume` on the
    merged database runs the missing cases there (its selection is the whole one)."""
    setup_home(isolated_home)
    shards = [isolated_home / f"s{i}.db" for i in (1, 2)]
    for i, db in enumerate(shards, 1):
        cli("eval", "e.jsonl", "-m", "direct", "--shard", f"{i}/2", "-q", "--db", str(db))
    with sqlite3.connect(shards[1]) as conn:  # as if stopped after 4 of its 6 cases
        conn.execute("delete from eval_results where case_id in ('c09', 'c11')")
        conn.execute("update eval_runs set status = 'interrupted'")
    cli("eval", "merge", *map(str, shards), "--into", "all.db")
    assert json.loads(cli("eval", "list", "--db", "all.db", "--json"))[0]["status"] == "interrupted"
    cli("eval", "--resume", "latest", "--db", "all.db", "-q")
    evals = json.loads(cli("eval", "list", "--db", "all.db", "--json"))
    assert evals[0]["status"] == "done" and evals[0]["results"] == 12
    # merged again: the eval the resume finished stays finished, and the count is the database's
    out = cli("eval", "merge", *map(str, shards), "--into", "all.db")
    assert "(done)" in out and "12 results" in out, out
    evals = json.loads(cli("eval", "list", "--db", "all.db", "--json"))
    assert evals[0]["status"] == "done" and evals[0]["results"] == 12


def test_merging_into_a_shard_under_another_name_is_refused(isolated_home: Path):
    """A hard link to a shard passed the path check: the merge failed on a disk I/O error and its
    write-ahead log, left beside the link, was later written into the shard."""
    setup_home(isolated_home)
    shards = [isolated_home / f"s{i}.db" for i in (1, 2)]
    for i, db in enumerate(shards, 1):
        cli("eval", "e.jsonl", "-m", "direct", "--shard", f"{i}/2", "-q", "--db", str(db))
    before = shards[1].read_bytes()
    (isolated_home / "link.db").hardlink_to(shards[1])
    (isolated_home / "sym.db").symlink_to(shards[1])
    for into in ("link.db", "sym.db"):
        out = cli("eval", "merge", *map(str, shards), "--into", into, code=1)
        assert "is the target of the merge" in out and out.count("\n") == 1, out
    assert shards[1].read_bytes() == before
    assert not list(isolated_home.glob("link.db-*")) and not list(isolated_home.glob("sym.db-*"))


def test_a_shard_resumes_its_own_cases_and_refuses_a_new_shard(isolated_home: Path):
    setup_home(isolated_home)
    cli("eval", "e.jsonl", "-m", "direct", "--shard", "2/5", "-q")
    with sqlite3.connect("traces.db") as conn:
        conn.execute("delete from eval_results where case_id = 'c06'")
        conn.execute("update eval_runs set status = 'interrupted'")
    err = cli("eval", "--resume", "latest", "--shard", "1/5", code=2)
    assert "--shard cannot be used with --resume" in err
    cli("eval", "--resume", "latest", "-q")
    with sqlite3.connect("traces.db") as conn:
        assert sorted(r[0] for r in conn.execute("select case_id from eval_results")) == ["c01", "c06", "c11"]


def test_a_resume_refuses_what_would_change_the_eval(isolated_home: Path):
    """A resume finishes what the eval started with: options that would choose other work were
    silently ignored (--limit, --filter, --repeats, --modes, a file) and a --param was taken."""
    setup_home(isolated_home)
    cli("eval", "e.jsonl", "-m", "direct,moa", "--limit", "4", "--param", "moa.extra_layers=1", "-q")
    with sqlite3.connect("traces.db") as conn:
        conn.execute("delete from eval_results where case_id = 'c03'")
        conn.execute("update eval_runs set status = 'interrupted'")
    for extra in (
        ["e.jsonl"], ["-m", "moa"], ["--limit", "2"], ["--repeats", "2"], ["--filter", "x"],
        ["--scorer", "exact"], ["--skip-invalid"], ["--shard", "1/2"],
    ):  # fmt: skip
        out = cli("eval", "--resume", "latest", *extra, code=2)
        assert out.startswith("Error: ") and "cannot be used with --resume" in out, (extra, out)
        assert out.count("\n") == 1
    out = cli("eval", "--resume", "latest", "--param", "moa.extra_layers=2", code=1)
    assert "it finishes with the parameters it started with (moa-v1.extra_layers=1)" in out, out
    cli("eval", "--resume", "latest", "--param", "moa.extra_layers=1", "-q")  # its own: taken
    with sqlite3.connect("traces.db") as conn:
        assert conn.execute("select count(*) from eval_results").fetchone() == (8,)
        assert conn.execute("select status from eval_runs").fetchone() == ("done",)
