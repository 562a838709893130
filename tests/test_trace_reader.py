"""traces/ owns the schema (issue 14): one step-tree builder behind every view, and one per-mode
definition of p50 latency, error rate and cost behind the `mode_stats` view, the HTTP summary and
the TUI dashboard.

Each test reads the same database through every front end and checks they agree: a run with an
orphan step (its parent is not in the trace) and cycles of parents shows every step exactly once
in `composite traces show`, `/composite/traces/{id}`, the Datasette timeline and the TUI trace
screen (the CLI used to drop the orphan; the API and the TUI dropped the cycles); awkward latency
data gives one p50 per mode everywhere (the three used to count different runs).
"""

from __future__ import annotations

import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from test_tui_support import SIZE, scripted_app, settle
from textual.widgets import Tree
from typer.testing import CliRunner

from composite_cli.percentiles import percentile
from composite_cli.traces.reader import TraceReader
from composite_cli.traces.recorder import iso
from composite_cli.traces.steptree import step_tree, walk
from composite_cli.traces.store import TraceStore
from composite_cli.tui.demo import T0, fanout_script

RUN = "run-damaged-0001"
# (id, parent id, name): a normal parent and child, an orphan, a two-step cycle, a self-parent,
# and a child hanging off the cycle.
STEPS = [
    ("s-root", None, "root-step"),
    ("s-child", "s-root", "child-step"),
    ("s-orphan", "s-gone", "orphan-step"),
    ("s-loop-a", "s-loop-b", "loop-a-step"),
    ("s-loop-b", "s-loop-a", "loop-b-step"),
    ("s-self", "s-self", "self-step"),
    ("s-under-loop", "s-loop-b", "under-loop-step"),
]
NAMES = [name for _, _, name in STEPS]


def damaged_db(path: Path, created: float = T0 - 60) -> Path:
    """A trace whose steps point at missing parents and at each other: what a merge of partial
    files or a damaged file holds. Written with foreign keys off (the store's writer enforces them)."""
    store = TraceStore(path).open()
    store.begin_run(
        {
            "id": RUN,
            "created_at": iso(created),
            "mode": "direct",
            "source": "chat",
            "status": "ok",
            "calls": 1,
        }
    )
    store.close()
    db = sqlite_utils.Database(path)  # foreign keys off: SQLite's default
    for i, (step_id, parent, name) in enumerate(STEPS):
        db["steps"].insert(
            {
                "id": step_id,
                "run_id": RUN,
                "parent_id": parent,
                "seq": i + 1,
                "depth": 0,
                "kind": "call",
                "name": name,
                "status": "ok",
                "started_at": iso(created + i),
                "offset_ms": float(i * 10),
                "latency_ms": 5.0,
            }
        )
    db.conn.close()
    return path


def test_the_builder_keeps_every_step_once_and_never_loops():
    rows = [
        {"id": s, "parent_id": p, "name": n, "offset_ms": float(i), "seq": i}
        for i, (s, p, n) in enumerate(STEPS)
    ]
    rows.append(dict(rows[1]))  # a repeated id is shown once
    tree = step_tree(rows)
    seen = [node.id for node, _ in walk(tree)]
    assert sorted(seen) == sorted(s for s, _, _ in STEPS)
    roots = [node.id for node in tree]
    assert roots == ["s-root", "s-orphan", "s-loop-a", "s-self"]  # start order; a cycle breaks at its first
    (loop_a,) = [n for n in tree if n.id == "s-loop-a"]
    assert [c.id for c in loop_a.children] == ["s-loop-b"]
    assert [c.id for c in loop_a.children[0].children] == ["s-under-loop"]


def test_a_deep_trace_does_not_hit_the_recursion_limit():
    rows = [{"id": f"s{i}", "parent_id": f"s{i - 1}" if i else None, "seq": i} for i in range(5000)]
    assert [level for _, level in walk(step_tree(rows))][-1] == 4999


def test_cli_traces_show_prints_every_step_once(isolated_home: Path):
    from composite_cli.cli.traces import app

    db = damaged_db(isolated_home / "traces.db")
    result = CliRunner().invoke(app, ["show", RUN, "--db", str(db)])
    assert result.exit_code == 0, result.output
    counts = Counter(
        name for line in result.stdout.splitlines() for name in NAMES if f" {name} " in line + " "
    )
    assert counts == Counter(NAMES)


def test_http_trace_endpoint_nests_every_step_once(isolated_home: Path):
    from fastapi.testclient import TestClient

    from composite_cli.serve.introspection import introspection_app

    db = damaged_db(isolated_home / "traces.db")
    runner: Any = types.SimpleNamespace(store=TraceStore(db))
    body = TestClient(introspection_app(runner, [])).get(f"/composite/traces/{RUN}").json()

    def names(nodes: list[dict[str, Any]]) -> list[str]:
        return [n for node in nodes for n in [node["name"], *names(node["children"])]]

    assert sorted(names(body["steps"])) == sorted(NAMES)


async def test_datasette_timeline_draws_every_step_once(isolated_home: Path):
    from datasette.app import Datasette

    from composite_cli.datasette.plugin import _timeline_vars

    db = damaged_db(isolated_home / "traces.db")
    ds = Datasette([str(db)])
    found = await _timeline_vars(ds, "traces", "runs", RUN)
    assert sorted(bar.name for bar in found["composite_timeline"].bars) == sorted(NAMES)
    assert sorted(out.name for out in found["composite_outputs"]) == []  # nothing said: no outputs


async def test_tui_trace_screen_shows_every_step_once(isolated_home: Path):
    db = damaged_db(isolated_home / "traces.db")
    app = scripted_app(isolated_home, [fanout_script(2)], db=db, trace=RUN)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        tree = screen.query_one("#step-tree", Tree)
        ids: list[str] = []
        stack = list(tree.root.children)
        while stack:
            node = stack.pop()
            ids.append(str(node.data))
            stack.extend(node.children)
        assert sorted(ids) == sorted(s for s, _, _ in STEPS)
        spans = screen.query_one("#trace-timeline").spans
        assert sorted(s.key for s in spans) == sorted(s for s, _, _ in STEPS)


# -- one per-mode definition ------------------------------------------------------------------

# mode: [(status, latency_ms, cost_usd, calls)]: even counts, ties, NULL latencies, error runs with
# a time-to-fail, partial runs, a running run, unknown costs, runs without calls.
RUNS: dict[str, list[tuple[str, float | None, float | None, int]]] = {
    "even": [("ok", 10.0, 0.001, 1), ("ok", 40.0, 0.002, 2), ("ok", 20.0, 0.001, 1), ("ok", 30.0, None, 1)],
    "ties": [("ok", 5.0, 0.1, 1), ("ok", 5.0, 0.1, 1), ("partial", 5.0, 0.2, 3), ("ok", 7.5, 0.1, 1)],
    "mixed": [
        ("ok", 100.0, 0.01, 1),
        ("error", 1.0, None, 1),  # failed fast: not a latency of an answer
        ("partial", 250.5, 0.03, 4),
        ("running", None, None, 0),
        ("ok", None, 0.01, 1),
        ("error", 3.0, None, 0),
        ("cancelled", 2.0, None, 1),
        ("ok", 0.3333, 0.02, 2),
    ],
    "failing": [("error", 9.0, None, 1), ("error", 11.0, None, 1)],
}


@pytest.fixture
def stats_db(isolated_home: Path) -> Path:
    path = isolated_home / "traces.db"
    store = TraceStore(path).open()
    created = time.time() - 600
    n = 0
    for mode, runs in RUNS.items():
        for status, latency, cost, calls in runs:
            n += 1
            store.begin_run(
                {
                    "id": f"r{n:03d}",
                    "created_at": iso(created + n),
                    "mode": mode,
                    "source": "serve",
                    "status": status,
                    "latency_ms": latency,
                    "cost_usd": cost,
                    "calls": calls,
                    "prompt_tokens": 10 * calls,
                    "completion_tokens": 3 * calls,
                }
            )
            for c in range(calls):  # its model calls: a failed one has no cost, nor does an unpriced one
                store.record_call(
                    {
                        "id": f"r{n:03d}-c{c}",
                        "run_id": f"r{n:03d}",
                        "seq": c + 1,
                        "depth": 0,
                        "kind": "llm",
                        "name": "answer",
                        "model": f"model-{(n + c) % 3}",
                        "status": "error" if status == "error" else "ok",
                        "latency_ms": 1.0,
                        "prompt_tokens": 10,
                        "completion_tokens": 3,
                        "cost_usd": None if cost is None or status == "error" else cost / calls,
                    }
                )
    store.close()
    return path


def test_one_p50_error_rate_and_cost_per_mode_everywhere(stats_db: Path):
    from composite_cli.serve.metrics import summary
    from composite_cli.traces.queries import dashboard

    store = TraceStore(stats_db)
    view = {r["mode"]: r for r in sqlite_utils.Database(stats_db).query("select * from mode_stats")}
    http = summary(store, last_hours=1, source=None)["modes"]
    tui = {m.mode: m for m in dashboard(store, "1h").modes}
    reader = {r["mode"]: r for r in TraceReader(store).mode_stats()}
    assert set(view) == set(http) == set(tui) == set(reader) == set(RUNS)
    for mode, runs in RUNS.items():
        answered = [lat for status, lat, _, _ in runs if status in ("ok", "partial") and lat is not None]
        expected = percentile(answered, 50)
        p50 = view[mode]["p50_latency_ms"]
        assert p50 == http[mode]["latency_ms"]["p50"] == tui[mode].p50_ms == reader[mode]["p50_latency_ms"], (
            mode
        )
        assert view[mode]["p95_latency_ms"] == http[mode]["latency_ms"]["p95"] == tui[mode].p95_ms, mode
        if expected is None:
            assert p50 is None
        else:
            assert p50 == pytest.approx(expected, abs=5e-4), mode
        finished = [r for r in runs if r[0] != "running"]
        errors = sum(1 for r in finished if r[0] == "error")
        rate = errors / len(finished)
        assert (
            view[mode]["error_rate"]
            == http[mode]["error_rate"]
            == tui[mode].error_rate
            == pytest.approx(rate)
        )
        known = [c for _, _, c, _ in finished if c is not None]
        mean = sum(known) / len(known) if known else None
        per_request = view[mode]["mean_cost_usd"]
        assert per_request == http[mode]["cost_usd"]["per_request"] == tui[mode].cost_per_request, mode
        assert per_request == (None if mean is None else pytest.approx(mean)), mode
        unpriced = sum(1 for _, _, c, calls in finished if c is None and calls > 0)
        assert view[mode]["unpriced_runs"] == http[mode]["cost_usd"]["unpriced_requests"] == unpriced
        assert tui[mode].unpriced_runs == unpriced


def test_a_window_and_a_source_narrow_the_same_definition(stats_db: Path):
    reader = TraceReader(TraceStore(stats_db))
    assert reader.mode_stats(source="chat") == []
    assert reader.mode_stats(since=iso(time.time() + 60)) == []
    whole = {r["mode"]: r for r in reader.mode_stats()}
    assert {r["mode"]: r for r in reader.mode_stats(source="serve", since=iso(0))} == whole


def test_one_definition_of_the_model_figures_everywhere(stats_db: Path):
    """Calls, errors, tokens, cost and unpriced calls per model agree in the `model_stats` view, the
    HTTP summary and the TUI dashboard (before: the API and the TUI counted a failed call as unpriced)."""
    from composite_cli.serve.metrics import summary
    from composite_cli.traces.queries import dashboard

    store = TraceStore(stats_db)
    view = {r["model"]: r for r in sqlite_utils.Database(stats_db).query("select * from model_stats")}
    http = summary(store, last_hours=1, source=None)["models"]
    tui = {m.model: m for m in dashboard(store, "1h").models}
    assert set(view) == set(http) == set(tui) and len(view) == 3
    for model, row in view.items():
        assert row["calls"] == http[model]["calls"] == tui[model].calls
        assert row["runs"] == tui[model].requests
        assert row["errors"] == http[model]["errors"]
        assert row["tokens"] == http[model]["tokens"]["prompt"] + http[model]["tokens"]["completion"]
        assert row["tokens"] == tui[model].tokens
        assert row["cost_usd"] == http[model]["cost_usd"]
        assert (row["cost_usd"] or 0.0) == tui[model].cost_usd
        assert row["unpriced_calls"] == http[model]["unpriced_calls"] == tui[model].unpriced_calls
    assert sum(r["errors"] for r in view.values()) > 0  # failed calls are there, and not unpriced
