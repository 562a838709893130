"""The read-only trace queries behind the TUI (composite_cli/traces/reader.py TraceReader, and the
dashboard in composite_cli/traces/queries.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_support import seeded_db

from composite_cli.traces import queries
from composite_cli.traces.reader import TraceReader
from composite_cli.traces.recorder import TraceRecorder
from composite_cli.traces.steptree import step_tree
from composite_cli.traces.store import RunNotFound, TraceStore, TraceStoreError
from composite_cli.tui.demo import T0
from composite_cli.tui.demo_data import RunSpec, simple_run


@pytest.fixture
def store(isolated_home: Path) -> TraceStore:
    return TraceStore(seeded_db(isolated_home))


def test_recent_runs_newest_first_with_filters(store: TraceStore):
    ids = [r["id"] for r in TraceReader(store).runs(brief=True, limit=200)]
    assert ids[0] == "demo-0006" and ids[-1] == "demo-0008" and len(ids) == 9
    assert [r["id"] for r in TraceReader(store).runs(brief=True, limit=200, mode="moa-v1")] == [
        "demo-0005",
        "demo-0002",
    ]
    assert [r["id"] for r in TraceReader(store).runs(brief=True, limit=200, status="error")] == ["demo-0005"]
    assert [
        r["id"] for r in TraceReader(store).runs(brief=True, limit=200, mode="direct", source="eval")
    ] == ["demo-0004"]
    assert len(TraceReader(store).runs(brief=True, limit=2)) == 2


def test_filter_values_are_the_distinct_values(store: TraceStore):
    values = TraceReader(store).filter_values()
    assert values["status"] == ["error", "ok"]
    assert values["source"] == ["chat", "eval", "serve"]
    assert "rlm-v1" in values["mode"]


def test_step_tree_nests_by_parent_in_start_order(store: TraceStore):
    _, steps = TraceReader(store).run_with_steps("demo-rlm-0001")
    (rlm,) = step_tree(steps)
    assert rlm.row["kind"] == "rlm"
    assert [c.row["name"] for c in rlm.children] == ["root (iteration 1)", "repl 1", "root (iteration 2)"]
    repl = rlm.children[1]
    assert [c.row["name"] for c in repl.children] == ["llm_query 1", "llm_query 2", "llm_query 3"]
    assert {c.row["depth"] for c in repl.children} == {2}


def test_find_run_id_by_prefix(store: TraceStore):
    assert TraceReader(store).run_id("demo-rlm") == "demo-rlm-0001"
    assert TraceReader(store).run_id("demo-0001") == "demo-0001"
    with pytest.raises(RunNotFound, match="several runs"):
        TraceReader(store).run_id("demo-000")
    with pytest.raises(RunNotFound, match="no run"):
        TraceReader(store).run_id("zzz")


def test_eval_runs_count_their_results(store: TraceStore):
    (row,) = TraceReader(store).eval_runs()
    assert row["id"] == "demo-eval-0001" and row["results"] == 36


def test_dashboard_aggregates_over_a_window(store: TraceStore):
    data = queries.dashboard(store, "24h", now=T0)
    assert data.requests == 8 and data.errors == 1 and data.tool_requests == 1
    modes = {m.mode: m for m in data.modes}
    assert modes["direct"].requests == 3 and modes["direct"].p50_ms == 700.0
    # the mean of the known costs, and how many runs had none (the mode_stats view's definition)
    assert modes["moa-v1"].error_rate == 0.5 and modes["moa-v1"].cost_per_request == pytest.approx(0.00021)
    assert modes["moa-v1"].unpriced_runs == 1
    assert modes["think-v1"].tool_fraction == 1.0
    assert data.models[0].model == "openai/gpt-4.1"  # the most expensive first
    assert abs(sum(m.cost_share for m in data.models) - 1.0) < 1e-9
    assert dict(data.depth)["1"] == 7 and dict(data.depth)["4-7"] == 1
    assert len(data.bucket_labels) == 24 and sum(data.requests_by_mode["direct"]) == 3
    assert queries.dashboard(store, "7d", now=T0).requests == 9
    assert queries.dashboard(store, "1h", now=T0 - 86400 * 30).requests == 0


def test_queries_on_a_missing_database_raise_the_store_error(isolated_home: Path):
    with pytest.raises(TraceStoreError):
        TraceReader(TraceStore(isolated_home / "missing.db")).runs()


def test_change_watcher_sees_writes_from_other_connections(isolated_home: Path):
    db = isolated_home / "traces.db"
    watcher = queries.ChangeWatcher(db)
    assert watcher.token() is None
    store = TraceStore(db).open()
    first = watcher.token()
    assert first is not None and watcher.token() == first  # nothing new: same token
    recorder = TraceRecorder(store)
    for event in simple_run(RunSpec("r1", "direct", "serve", 1, 0.5)):
        recorder(event)
    store.flush()
    assert watcher.token() != first
    store.close()
    watcher.close()
