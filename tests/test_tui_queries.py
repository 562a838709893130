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


def _record(store: TraceStore, specs: list[tuple[RunSpec, str]]) -> None:
    """Record simple runs, each with its own input text."""
    import dataclasses

    from composite_cli.events import RunStarted

    recorder = TraceRecorder(store)
    for spec, text in specs:
        for event in simple_run(spec):
            recorder(dataclasses.replace(event, input=text) if isinstance(event, RunStarted) else event)
    store.flush()


def test_runs_page_past_the_first_rows_and_count_them(isolated_home: Path):
    store = TraceStore(isolated_home / "many.db").open()
    _record(store, [(RunSpec(f"r{i:04d}", "direct", "eval", 1000 - i, 0.1), f"case {i}") for i in range(450)])
    reader = TraceReader(store)
    assert reader.count_runs() == 450 and reader.count_runs(mode="moa-v1") == 0
    first = reader.runs(brief=True, limit=200)
    third = reader.runs(brief=True, limit=200, offset=400)
    assert [r["id"] for r in first[:2]] == ["r0449", "r0448"] and len(third) == 50
    assert third[-1]["id"] == "r0000" and not {r["id"] for r in first} & {r["id"] for r in third}
    store.close()


def test_runs_carry_their_input_and_can_be_searched(isolated_home: Path):
    store = TraceStore(isolated_home / "search.db").open()
    _record(
        store,
        [
            (RunSpec("a1", "direct", "cli", 30, 0.1), "Summarise the 100% report\nwith details"),
            (RunSpec("a2", "direct", "cli", 20, 0.1), "What is the capital of France?"),
            (RunSpec("a3", "direct", "cli", 10, 0.1, cost=None), "  \nsecond_line only"),
        ],
    )
    reader = TraceReader(store)
    rows = {r["id"]: r for r in reader.runs(brief=True)}
    assert rows["a1"]["input_head"].startswith("Summarise the 100% report\n")
    assert "input" not in rows["a1"] and "output" not in rows["a1"]  # brief: not the whole text
    assert [r["id"] for r in reader.runs(search="capital")] == ["a2"]
    assert [r["id"] for r in reader.runs(search="CAPITAL of")] == ["a2"]  # case-insensitive
    assert [r["id"] for r in reader.runs(search="100%")] == ["a1"]  # % is a character
    assert [r["id"] for r in reader.runs(search="s_c")] == []  # _ is a character, not a wildcard
    assert [r["id"] for r in reader.runs(search="second_line")] == ["a3"]
    assert reader.runs(search="\\") == [] and reader.count_runs(search="'; drop table runs; --") == 0
    assert reader.count_runs(search="42") == 3  # the answers are searched too
    # a run whose answered call has no price counts it, so its cost is never a made-up 0
    assert rows["a3"]["unpriced_calls"] == 1 and rows["a2"]["unpriced_calls"] == 0
    store.close()


def test_costs_are_written_one_way():
    from composite_cli.tui.units import cost

    assert cost(0.0076) == "$0.0076" and cost(0.000062) == "$0.000062" and cost(1.5) == "$1.50"
    assert cost(0.0) == "$0.00" and cost(None) == "?"
    assert cost(0.0076, 3) == "$0.0076 + 3 unpriced"
    assert cost(None, 2) == "2 unpriced" and cost(0.0, 2) == "2 unpriced"  # never $0.000000
    assert "0.000000" not in cost(0.0)


def test_the_fit_window_spreads_a_burst_over_its_buckets(isolated_home: Path):
    store = TraceStore(isolated_home / "burst.db").open()
    _record(store, [(RunSpec(f"b{i}", "direct", "cli", 300 - i * 20, 0.1), "q") for i in range(15)])
    data = queries.dashboard(store, "fit", now=T0)
    assert data.requests == 15 and 1 < len(data.bucket_labels) <= queries.FIT_BUCKETS + 1
    assert sum(1 for n in data.requests_by_mode["direct"] if n) > 5  # not one bar at the edge
    assert queries.dashboard(store, "24h", now=T0).requests_by_mode["direct"].count(0) == 23  # what it was
    store.close()


def test_dashboard_totals_say_how_many_calls_had_no_price(isolated_home: Path):
    store = TraceStore(isolated_home / "prices.db").open()
    _record(
        store,
        [
            (RunSpec("p1", "direct", "cli", 30, 0.1, cost=0.002), "q"),
            (RunSpec("p2", "direct", "cli", 20, 0.1, cost=None), "q"),
            (RunSpec("p3", "moa-v1", "cli", 10, 0.1, model="ollama/x", cost=None), "q"),
        ],
    )
    data = queries.dashboard(store, "fit", now=T0)
    assert data.cost_usd == pytest.approx(0.002) and data.unpriced_calls == 2
    # by mode too it counts calls, as the header, Traces and Evals do (it counted runs: "4 unpriced"
    # for a mode beside a header of 32 and runs of 5 unpriced calls each)
    listed: dict[str, int] = {}
    for run in TraceReader(store).runs(limit=100, brief=True):  # the Traces list's count, run by run
        listed[run["mode"]] = listed.get(run["mode"], 0) + int(run["unpriced_calls"])
    assert {m.mode: m.unpriced_calls for m in data.modes} == listed == {"direct": 1, "moa-v1": 1}
    models = {m.model: m for m in data.models}
    assert models["ollama/x"].cost_usd is None and models["ollama/x"].cost_per_request is None
    store.close()


def test_the_fit_window_is_not_stretched_by_a_few_old_runs(isolated_home: Path):
    store = TraceStore(isolated_home / "straggler.db").open()
    burst = [(RunSpec(f"b{i:02d}", "direct", "eval", 600 - i * 20, 0.1), "q") for i in range(30)]
    _record(store, [(RunSpec("old", "direct", "cli", 4 * 86400, 0.1), "q"), *burst])
    data = queries.dashboard(store, "fit", now=T0)
    assert data.requests == 30 and sum(1 for n in data.requests_by_mode["direct"] if n) > 10
    store.close()


def test_a_mode_with_one_request_is_visible_in_the_stack():
    from composite_cli.tui.widgets.bars import _segments, stacked_columns

    assert _segments([500, 1, 0, 2], 503, 10) == [8, 1, 0, 1]  # at least a cell each, none for 0
    assert sum(_segments([1] * 12, 12, 5)) == 12  # more modes than cells: one each, the column grows
    chart = stacked_columns(["10:00", "10:05"], {"big": [0, 300], "tiny": [0, 1]}, 40, 12)
    rows = chart.plain.splitlines()
    assert "tiny 1" in rows[-1] and "big 300" in rows[-1]
    tiny = [span for span in chart.spans if span.style == "#f28e2b"]  # the second series' colour
    assert len(tiny) >= 2  # a cell in the column and the legend's mark


def test_by_mode_the_unpriced_count_is_calls_as_on_every_other_screen(isolated_home: Path):
    """A moa-v1 run makes 4 calls: on a model without a price, the Traces list says `4 unpriced`
    for it, and so does the dashboard's by-mode table now (it said `1`, counting runs)."""
    import asyncio

    from composite_cli.config import Profile, Settings
    from composite_cli.engine.runtime import RunRequest
    from composite_cli.runner import Runner

    db = isolated_home / "unpriced.db"
    model = {"model": "openai/composite-test-no-price", "mock_response": "4"}
    runner = Runner(Settings(profile=Profile("p", {"*": model}), db_path=db))
    messages = [{"role": "user", "content": "2 + 2?"}]

    async def go() -> None:
        for mode in ("moa-v1", "direct"):
            await runner.run(mode, RunRequest(messages=messages, source="cli"))

    try:
        asyncio.run(go())
        runner.flush()
    finally:
        runner.close()
    store = TraceStore(db).open()
    try:
        data = queries.dashboard(store, "fit")
        listed = {r["mode"]: int(r["unpriced_calls"]) for r in TraceReader(store).runs(brief=True)}
        assert listed == {"moa-v1": 4, "direct": 1}
        assert {m.mode: m.unpriced_calls for m in data.modes} == listed
        assert {m.mode: m.unpriced_runs for m in data.modes} == {"moa-v1": 1, "direct": 1}  # the view's
        assert data.unpriced_calls == 5
    finally:
        store.close()
