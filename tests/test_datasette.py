"""`datasette traces.db`: foreign-key links, summary views, canned queries, the step timeline on
a run's page, readable JSON columns, and `composite traces browse` serving all of it.

The database is filled by running real modes (moa-v1 with a middle layer, direct, think-v1,
client tools, an eval) on the fake model. Pages are fetched with Datasette's own test client;
the plugin is registered with `register()` until the package's entry point is installed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from datasette.app import Datasette

import composite_cli.calls
from composite_cli.config import Profile, Settings
from composite_cli.datasette import METADATA_PATH, database_metadata, metadata_for
from composite_cli.datasette import plugin as composite_plugin
from composite_cli.datasette.timeline import (
    OUTPUT_MAX_CHARS,
    build_timeline,
    nice_ticks,
    step_outputs,
    tree_order,
)
from composite_cli.engine.runtime import RunRequest
from composite_cli.evals.dataset import load_eval_file
from composite_cli.evals.runner import EvalRunner, EvalSettings
from composite_cli.evals.stats import percentile
from composite_cli.runner import Runner

USER = [{"role": "user", "content": "Capital of France?"}]
QUERIES = {
    "slowest_runs",
    "failed_steps",
    "cost_by_model",
    "depth_distribution",
    "tool_using_requests",
    "eval_comparison",
}
# Different proposer latencies, so the fan-out's bars visibly overlap but differ.
DELAYS = {"analyst": 0.12, "teacher": 0.2, "skeptic": 0.08, "answer": 0.1}
THINK_CALL = {
    "id": "t1",
    "type": "function",
    "function": {"name": "think", "arguments": '{"thought": "Paris."}'},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_CALL = {
    "id": "w1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def _capitals(name: str, messages: list[dict[str, Any]]) -> str | None:
    text = str(messages)
    return "Paris" if "France" in text else "Rome" if "Italy" in text else None


async def populate(db_path: Path, fake: Any) -> dict[str, str]:
    """Fill a trace database by running modes on the fake model; return run ids by role."""
    from conftest import Reply

    runner = Runner(Settings(profile=Profile("p", {"*": {"model": "openai/gpt-4o-mini"}}), db_path=db_path))
    ids: dict[str, str] = {}
    fake.script(lambda name, m: Reply(f"{name}: Paris", delay=DELAYS.get(name, 0.02)))
    moa = await runner.run("moa", RunRequest(messages=USER, source="chat", params={"extra_layers": 1}))
    ids["moa"] = moa.run_id
    fake.scripts.clear()
    for i, delay in enumerate((0.01, 0.03, 0.05)):
        fake.default = Reply("Paris", delay=delay)
        ids[f"direct{i}"] = (await runner.run("direct", RunRequest(messages=USER))).run_id
    import litellm

    fake.default = Reply(error=litellm.APIConnectionError("network down", "openai", "x"))
    with pytest.raises(litellm.APIConnectionError):
        await runner.run("direct", RunRequest(messages=USER, source="serve"))
    fake.default = Reply("Paris")
    fake.on("answer", None, tool_calls=[THINK_CALL]).on("answer", "Paris")
    ids["think"] = (await runner.run("think-v1", RunRequest(messages=USER))).run_id
    fake.by_name.clear()
    fake.on("answer", None, tool_calls=[WEATHER_CALL])
    ids["client_tools"] = (await runner.run("direct", RunRequest(messages=USER, tools=[WEATHER_TOOL]))).run_id
    fake.by_name.clear()
    fake.script(_capitals)
    cases = db_path.parent / "cases.jsonl"
    cases.write_text(
        '{"id": "fr", "input": "Capital of France?", "expected": "Paris", "scorer": "contains"}\n'
        '{"id": "it", "input": "Capital of Italy?", "expected": "Paris", "scorer": "contains"}\n',
        encoding="utf-8",
    )
    eval_file = load_eval_file(cases)
    evals = EvalRunner(runner, EvalSettings(modes=["direct", "moa-v1"], cache=False))
    ids["eval"] = evals.start(eval_file, ["direct", "moa-v1"])
    await evals.run(eval_file, ids["eval"])
    runner.flush()
    runner.close()
    fake.scripts.clear()
    return ids


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A populated `traces.db` (so Datasette calls it "traces") and the run ids in it."""
    from conftest import FakeModel

    path = tmp_path_factory.mktemp("datasette") / "traces.db"
    with pytest.MonkeyPatch.context() as mp:
        fake = FakeModel()
        mp.setattr(composite_cli.calls, "litellm_acompletion", fake)
        ids = asyncio.run(populate(path, fake))
    return path, ids


@pytest.fixture(scope="module", autouse=True)
def plugin_registered() -> Iterator[None]:
    registered = composite_plugin.register()
    yield
    if registered:
        composite_plugin.unregister()


def rows(path: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


async def get(ds: Datasette, path: str) -> Any:
    response = await ds.client.get(path)
    assert response.status_code == 200, (path, response.text[:500])
    return response


async def get_json(ds: Datasette, path: str) -> Any:
    """Rows of a table, view or canned query as a list of dicts (`?a=b` arguments kept)."""
    page, _, query = path.partition("?")
    return (await get(ds, f"{page}.json?_shape=array&_size=max&{query}")).json()


def bars(html: str) -> list[dict[str, Any]]:
    """The timeline's rows: step id, indentation (em), bar classes, left and width (percent)."""
    found = []
    for row in html.split('<div class="ct-row')[2:]:  # [0] is before the grid, [1] the axis
        indent = re.search(r"padding-left: ([\d.]+)em", row)
        bar = re.search(
            r'<div class="ct-bar ([^"]*)" data-step-id="([^"]+)"[^>]*style="left: ([\d.]+)%; width: ([\d.]+)%"',
            row,
        )
        assert indent and bar, row[:300]
        found.append(
            {
                "indent": float(indent.group(1)),
                "classes": bar.group(1),
                "id": bar.group(2),
                "left": float(bar.group(3)),
                "width": float(bar.group(4)),
            }
        )
    return found


# -- foreign keys, views, canned queries -------------------------------------------------------------


async def test_foreign_keys_link_steps_and_eval_results_to_runs(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    run_page = (await get(ds, f"/traces/runs/{ids['moa']}")).text
    assert "Links from other tables" in run_page
    assert "from run_id in steps" in run_page
    steps_page = (await get(ds, f"/traces/steps?run_id={ids['moa']}")).text
    assert f'href="/traces/runs/{ids["moa"]}"' in steps_page
    eval_run = rows(path, "select run_id, eval_run_id from eval_results limit 1")[0]
    results_page = (await get(ds, "/traces/eval_results")).text
    assert f'href="/traces/runs/{eval_run["run_id"]}"' in results_page
    assert f'href="/traces/eval_runs/{eval_run["eval_run_id"]}"' in results_page
    eval_run_page = (await get(ds, f"/traces/runs/{eval_run['run_id']}")).text
    assert "from run_id in eval_results" in eval_run_page


async def test_run_summary_view(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    summary = {r["id"]: r for r in await get_json(ds, "/traces/run_summary")}
    moa = summary[ids["moa"]]
    llm_steps = rows(path, "select * from steps where run_id = ? and kind = 'llm'", ids["moa"])
    assert moa["mode"] == "moa-v1" and moa["source"] == "chat" and moa["status"] == "ok"
    assert moa["llm_calls"] == len(llm_steps) == moa["calls"] == 7  # 3 proposers, 3 refiners, 1 aggregator
    assert moa["max_depth"] == max(
        s["depth"] for s in rows(path, "select depth from steps where run_id = ?", ids["moa"])
    )
    assert moa["tokens"] == moa["prompt_tokens"] + moa["completion_tokens"] > 0
    assert moa["used_tools"] == 0 and moa["tool_steps"] == 0
    think = summary[ids["think"]]
    assert think["used_tools"] == 1 and think["tool_steps"] == 1
    client = summary[ids["client_tools"]]
    assert client["used_tools"] == 1 and client["tool_steps"] == 0 and client["finish_reason"] == "tool_calls"
    assert summary[ids["direct0"]]["used_tools"] == 0
    assert len(summary) == len(rows(path, "select id from runs"))


async def test_mode_stats_view_percentiles_match_the_eval_report(traces):
    path, _ = traces
    ds = Datasette([str(path)])
    stats = {r["mode"]: r for r in await get_json(ds, "/traces/mode_stats")}
    direct_runs = rows(path, "select * from runs where mode = 'direct'")
    direct = stats["direct"]
    assert direct["requests"] == len(direct_runs) >= 6
    assert direct["errors"] == 1
    # answered runs only (ok, partial): the one per-mode definition (m008)
    answered = [r for r in direct_runs if r["status"] in ("ok", "partial")]
    latencies = [r["latency_ms"] for r in answered if r["latency_ms"] is not None]
    assert len(latencies) < len(direct_runs)  # the error run's time-to-fail is not a latency
    assert direct["p50_latency_ms"] == pytest.approx(percentile(latencies, 50), abs=1e-3)
    assert direct["p95_latency_ms"] == pytest.approx(percentile(latencies, 95), abs=1e-3)
    assert direct["p50_latency_ms"] < direct["p95_latency_ms"]
    assert direct["mean_calls"] == pytest.approx(
        sum(r["calls"] for r in direct_runs) / len(direct_runs), abs=0.01
    )
    assert direct["tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in direct_runs)
    assert direct["cost_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in direct_runs))
    assert stats["moa-v1"]["requests"] == 3 and stats["moa-v1"]["errors"] == 0


def test_mode_stats_percentiles_on_known_values(tmp_path):
    """Linear interpolation (numpy's default) for n = 1, 2, 5 and 20, including ties."""
    import sqlite_utils

    from composite_cli.traces.migrations import apply_migrations

    db = sqlite_utils.Database(tmp_path / "p.db")
    apply_migrations(db)
    samples = {
        "one": [7.0],
        "two": [10.0, 20.0],
        "five": [5.0, 1.0, 4.0, 2.0, 3.0],
        "many": [float(i % 7) for i in range(20)],
    }
    for mode, values in samples.items():
        for i, v in enumerate(values):
            db.table("runs").insert(
                {"id": f"{mode}{i}", "mode": mode, "status": "ok", "latency_ms": v, "calls": 1}
            )
    db.table("runs").insert({"id": "still", "mode": "two", "status": "running", "calls": 0})
    stats = {r["mode"]: r for r in db.query("select * from mode_stats")}
    for mode, values in samples.items():
        assert stats[mode]["p50_latency_ms"] == pytest.approx(percentile(values, 50)), mode
        assert stats[mode]["p95_latency_ms"] == pytest.approx(percentile(values, 95)), mode
    assert stats["two"]["requests"] == 3  # the running one counts as a request, not in latency


async def test_mode_stats_counts_partial_runs_and_run_summary_says_why(tmp_path):
    """A database made before m006 (views without partial) is upgraded by the new migration."""
    import sqlite_utils

    from composite_cli.traces.migrations import MIGRATIONS, apply_migrations

    path = tmp_path / "traces.db"
    db = sqlite_utils.Database(path)
    before = [m for m in MIGRATIONS if m[0] < "m006"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("composite_cli.traces.migrations.MIGRATIONS", before)
        apply_migrations(db)
    assert "partial" not in db["mode_stats"].columns_dict
    assert apply_migrations(db) == [n for n, _ in MIGRATIONS if n >= "m006"]
    cap = "max_iterations (8)"
    for i, (status, stopped_by) in enumerate(
        [("ok", None), ("partial", cap), ("partial", cap), ("error", None), ("running", None)]
    ):
        db.table("runs").insert(
            {"id": f"r{i}", "mode": "rlm-v1", "status": status, "stopped_by": stopped_by, "calls": 1}
        )
    db.conn.close()
    ds = Datasette([str(path)])
    (stats,) = await get_json(ds, "/traces/mode_stats")
    assert (stats["requests"], stats["ok"], stats["errors"], stats["partial"]) == (5, 1, 1, 2)
    summary = {r["id"]: r for r in await get_json(ds, "/traces/run_summary")}
    assert summary["r1"]["status"] == "partial" and summary["r1"]["stopped_by"] == cap
    assert summary["r0"]["stopped_by"] is None


async def test_model_stats_view(traces):
    path, _ = traces
    ds = Datasette([str(path)])
    (model,) = await get_json(ds, "/traces/model_stats")
    llm = rows(path, "select * from steps where kind = 'llm'")
    assert model["model"] == "openai/gpt-4o-mini"
    assert model["calls"] == len(llm)
    assert model["errors"] == sum(1 for s in llm if s["status"] == "error") == 1
    assert model["tokens"] == sum((s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0) for s in llm)
    assert model["mean_latency_ms"] == pytest.approx(sum(s["latency_ms"] for s in llm) / len(llm), abs=1e-3)


async def test_canned_queries_are_listed_and_return_the_right_rows(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    listed = {q["name"]: q for q in (await get(ds, "/traces.json")).json()["queries"]}
    assert set(listed) == QUERIES
    assert all(q["title"] for q in listed.values())

    slowest = await get_json(ds, "/traces/slowest_runs")
    assert slowest[0]["latency_ms"] == max(r["latency_ms"] for r in rows(path, "select latency_ms from runs"))
    only_direct = await get_json(ds, "/traces/slowest_runs?mode=direct")
    assert only_direct and {r["mode"] for r in only_direct} == {"direct"}

    failed = await get_json(ds, "/traces/failed_steps")
    assert failed and all("APIConnectionError" in (r["error"] or "") for r in failed)

    (by_model,) = await get_json(ds, "/traces/cost_by_model")
    assert by_model["pct_of_cost"] == 100.0 and by_model["calls"] > 0

    depth = await get_json(ds, "/traces/depth_distribution")
    moa_rows = [r for r in depth if r["mode"] == "moa-v1"]
    assert {(r["internal_calls"], r["runs"]) for r in moa_rows} == {(7, 1), (4, 2)}
    assert sum(r["pct_of_mode"] for r in moa_rows) == pytest.approx(100.0)

    tools = {r["id"]: r for r in await get_json(ds, "/traces/tool_using_requests")}
    assert set(tools) == {ids["think"], ids["client_tools"]}
    assert tools[ids["think"]]["tools_run"] == "think:think" and tools[ids["think"]]["tool_steps"] == 1
    assert tools[ids["client_tools"]]["calls_offered_tools"] == 1

    comparison = {r["mode"]: r for r in await get_json(ds, "/traces/eval_comparison")}
    assert set(comparison) == {"direct", "moa-v1"}
    for row in comparison.values():
        assert row["eval_run_id"] == ids["eval"] and row["n"] == 2 and row["errors"] == 0
        assert row["mean_score"] == 0.5 and row["passed"] == 1  # Paris is right, Rome is not
        assert row["mean_latency_ms"] > 0 and row["mean_calls"] >= 1
    assert comparison["moa-v1"]["mean_calls"] == 4


async def test_tables_have_titles_descriptions_and_facets(traces):
    path, _ = traces
    ds = Datasette([str(path)])
    runs_page = (await get(ds, "/traces/runs")).text
    assert "One row per top-level request" in runs_page
    data = (await get(ds, "/traces/runs.json?_extra=facet_results")).json()
    assert {"mode", "status", "source"} <= set(data["facet_results"])
    index = (await get(ds, "/")).text
    assert "composite traces" in index


# -- the timeline ----------------------------------------------------------------------------------


async def test_run_page_shows_a_timeline_with_one_bar_per_step(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    html = (await get(ds, f"/traces/runs/{ids['moa']}")).text
    steps = rows(path, "select * from steps where run_id = ?", ids["moa"])
    assert 'id="composite-timeline"' in html
    assert f'data-steps="{len(steps)}"' in html
    drawn = bars(html)
    assert sorted(b["id"] for b in drawn) == sorted(s["id"] for s in steps)
    assert all(b["width"] >= 0 and 0 <= b["left"] <= 100 and b["left"] + b["width"] <= 100.001 for b in drawn)
    # The timeline comes before the row's own table.
    assert html.index('id="composite-timeline"') < html.index('<table class="rows-and-columns">')


async def test_fanout_calls_are_drawn_in_parallel_and_nested(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    html = (await get(ds, f"/traces/runs/{ids['moa']}")).text
    by_id = {b["id"]: b for b in bars(html)}
    steps = rows(path, "select * from steps where run_id = ?", ids["moa"])
    proposals = next(s for s in steps if s["kind"] == "fanout" and s["name"] == "proposals")
    experts = [by_id[s["id"]] for s in steps if s["parent_id"] == proposals["id"]]
    assert len(experts) == 3
    # Parallel: every expert starts before any other ends.
    assert max(b["left"] for b in experts) < min(b["left"] + b["width"] for b in experts)
    widths = sorted(b["width"] for b in experts)
    assert widths[0] < widths[-1]  # 80 ms vs 200 ms: bars sized by latency
    # Sequential: the aggregator starts after the proposals end.
    answer = next(s for s in steps if s["kind"] == "synthesize")
    fanout_bar = by_id[proposals["id"]]
    assert by_id[answer["id"]]["left"] >= fanout_bar["left"] + fanout_bar["width"] - 0.5
    # Nested: the experts' rows are indented one level under the fan-out.
    assert all(b["indent"] > fanout_bar["indent"] and "kind-llm" in b["classes"] for b in experts)
    assert "kind-fanout" in fanout_bar["classes"]


async def test_a_failed_call_is_drawn_as_an_error(traces):
    path, _ = traces
    ds = Datasette([str(path)])
    run = rows(path, "select id from runs where status = 'error'")[0]
    html = (await get(ds, f"/traces/runs/{run['id']}")).text
    failed = [b for b in bars(html) if "status-error" in b["classes"]]
    assert {b["classes"] for b in failed} == {"kind-call status-error", "kind-llm status-error"}
    assert "<strong>2 failed</strong>" in html


async def test_step_page_highlights_the_step_and_pretty_prints_json(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    step = rows(
        path, "select * from steps where run_id = ? and kind = 'llm' and name = 'analyst'", ids["moa"]
    )[0]
    html = (await get(ds, f"/traces/steps/{step['id']}")).text
    assert 'id="composite-timeline"' in html and "ct-row ct-highlight" in html
    assert f'href="/traces/runs/{ids["moa"]}"' in html
    pre = re.search(r'<pre class="composite-json">(.*?)</pre>', html, re.S)
    assert pre and "\n  &#34;messages&#34;: [" in pre.group(1)
    assert html.count('<pre class="composite-json">') == 2  # request_json and response_json


async def test_json_cells_are_cut_short_in_tables(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    html = (await get(ds, f"/traces/steps?run_id={ids['moa']}&kind=llm")).text
    assert '<pre class="composite-json">' not in html
    longest = max(
        len(r["request_json"]) for r in rows(path, "select request_json from steps where kind = 'llm'")
    )
    assert longest > composite_plugin.TABLE_PREVIEW_CHARS
    cells = re.findall(r'<td class="col-request_json[^"]*">(.*?)</td>', html, re.S)
    assert cells and all(len(c) < 2 * composite_plugin.TABLE_PREVIEW_CHARS for c in cells)
    assert any(c.rstrip().endswith("…") for c in cells)


async def test_other_pages_and_databases_are_left_alone(traces, tmp_path):
    path, ids = traces
    other = tmp_path / "plain.db"
    conn = sqlite3.connect(other)
    conn.execute("create table runs (id text primary key, request_json text)")
    conn.execute("""insert into runs values ('a', '{"x": 1}')""")
    conn.commit()
    conn.close()
    ds = Datasette([str(path), str(other)])
    html = (await get(ds, "/plain/runs/a")).text
    assert "composite-timeline" not in html and "composite-json" not in html
    assert (await get(ds, "/plain.json")).json()["queries"] == []
    index = (await get(ds, "/")).text
    assert "<h1>composite traces</h1>" not in index  # the instance title stays Datasette's own
    eval_run = (await get(ds, f"/traces/eval_runs/{ids['eval']}")).text
    assert 'id="composite-timeline"' not in eval_run and "Links from other tables" in eval_run


async def test_metadata_applies_to_a_trace_database_of_any_name(traces, tmp_path):
    path, ids = traces
    renamed = tmp_path / "all.db"
    shutil.copy(path, renamed)
    ds = Datasette([str(renamed)])
    assert {q["name"] for q in (await get(ds, "/all.json")).json()["queries"]} == QUERIES
    assert 'id="composite-timeline"' in (await get(ds, f"/all/runs/{ids['moa']}")).text


def test_shipped_metadata_file():
    import yaml

    data = yaml.safe_load(METADATA_PATH.read_text(encoding="utf-8"))
    assert data["title"] and set(data["databases"]) == {"traces"}
    meta = database_metadata()
    assert set(meta["queries"]) == QUERIES
    assert {"runs", "steps", "eval_runs", "eval_results", "run_summary", "mode_stats", "model_stats"} <= set(
        meta["tables"]
    )
    for name, query in meta["queries"].items():
        assert query["title"] and query["description"] and query["sql"].lstrip().startswith("select"), name
    assert set(metadata_for(["x", "y"])["databases"]) == {"x", "y"}


# -- outputs on a run's page, a step's page, links, costs, errors, legend -----------------------------


def details(html: str) -> dict[str, str]:
    """The run page's output sections: step id -> the <details> element's HTML."""
    section = html[html.index('id="composite-outputs"') :]
    return {
        m.group(1): m.group(0)
        for m in re.finditer(
            r'<details class="cs-step[^"]*" data-step-id="([^"]+)".*?</details>', section, re.S
        )
    }


async def test_run_page_shows_what_each_step_said_under_the_timeline(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    html = (await get(ds, f"/traces/runs/{ids['moa']}")).text
    steps = rows(path, "select * from steps where run_id = ?", ids["moa"])
    parents = {s["parent_id"] for s in steps}
    calls = [s for s in steps if s["kind"] == "llm"]
    shown = details(html)
    # Every model call (3 experts, 3 refiners, the aggregator) once; no step that only gathers them.
    assert (
        set(shown)
        == {s["id"] for s in calls}
        == {s["id"] for s in steps if s["id"] not in parents and s["output"]}
    )
    for call in calls:
        assert f"{call['name']}: Paris" in shown[call["id"]] and " open" in shown[call["id"]].split(">")[0]
        assert f'href="/traces/steps/{call["id"]}"' in shown[call["id"]]
    experts = [s for s in calls if s["name"] in ("analyst", "teacher", "skeptic")]
    assert len(experts) == 6  # two layers, told apart by the steps around them
    within = [re.search(r'<span class="cs-meta">([^<]*) ›</span>', shown[s["id"]]) for s in experts]
    assert sorted(m.group(1) for m in within if m) == ["layers › refined"] * 3 + ["proposals"] * 3
    assert html.index('id="composite-timeline"') < html.index('id="composite-outputs"')
    assert html.index('id="composite-outputs"') < html.index('<table class="rows-and-columns">')
    final = re.search(r'<details open class="cs-final" id="composite-final-answer">.*?</details>', html, re.S)
    run = rows(path, "select output from runs where id = ?", ids["moa"])[0]
    assert final and run["output"] in final.group(0)


async def test_run_page_shows_a_failed_steps_error_once(traces):
    path, _ = traces
    ds = Datasette([str(path)])
    run = rows(path, "select id from runs where status = 'error'")[0]
    html = (await get(ds, f"/traces/runs/{run['id']}")).text
    (shown,) = details(html).values()  # the model call that failed, not the call step above it
    assert "APIConnectionError: network down" in shown
    assert "litellm.APIConnectionError" not in html


async def test_step_page_puts_output_and_request_first(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    step = rows(
        path, "select * from steps where run_id = ? and kind = 'llm' and name = 'analyst'", ids["moa"]
    )[0]
    html = (await get(ds, f"/traces/steps/{step['id']}")).text
    order = [
        'id="composite-step-output"',
        'id="composite-step-messages"',
        'id="composite-step-request"',
        'id="composite-step-response"',
        'id="composite-timeline"',
        '<table class="rows-and-columns">',
    ]
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions), order
    output = re.search(r'id="composite-step-output">.*?</details>', html, re.S)
    assert output and "analyst: Paris" in output.group(0)
    messages = re.search(r'id="composite-step-messages">.*?</details>', html, re.S)
    assert messages and "Capital of France?" in messages.group(0)
    # The table below repeats the long columns only as a preview.
    table = html[html.index('<table class="rows-and-columns">') :]
    cell = re.search(r'<td class="col-request_json[^"]*">(.*?)</td>', table, re.S)
    assert cell and len(cell.group(1)) < 2 * composite_plugin.TABLE_PREVIEW_CHARS
    assert "(shown above)" in cell.group(1)


async def test_run_and_step_ids_in_views_and_canned_queries_are_links(traces):
    path, ids = traces
    ds = Datasette([str(path)])
    run_link = f'href="/traces/runs/{ids["moa"]}"'
    assert run_link in (await get(ds, "/traces/run_summary")).text
    assert run_link in (await get(ds, "/traces/slowest_runs?mode=")).text
    assert f'href="/traces/runs/{ids["think"]}"' in (await get(ds, "/traces/tool_using_requests")).text
    (failed,) = rows(
        path,
        "select s.id, s.run_id from steps s where s.status = 'error' and s.kind = 'llm'",
    )
    page = (await get(ds, "/traces/failed_steps?mode=")).text
    assert (
        f'href="/traces/steps/{failed["id"]}"' in page and f'href="/traces/runs/{failed["run_id"]}"' in page
    )
    assert f'href="/traces/eval_runs/{ids["eval"]}"' in (await get(ds, "/traces/eval_comparison")).text
    # Any SQL: run_id and step-like columns are links too.
    sql = (await get(ds, "/traces?sql=select+run_id,+parent_id+from+steps+where+parent_id+is+not+null")).text
    assert run_link in sql and 'href="/traces/steps/' in sql
    # A table's own foreign keys are still Datasette's links (with their labels).
    steps_page = (await get(ds, f"/traces/steps?run_id={ids['moa']}")).text
    assert f'href="/traces/runs/{ids["moa"]}">moa-v1</a>' in steps_page  # the run's label


async def test_failed_steps_has_one_line_per_failure(traces):
    path, _ = traces
    ds = Datasette([str(path)])
    failed = await get_json(ds, "/traces/failed_steps")
    error_runs = rows(path, "select id from runs where status = 'error'")
    # The failed model call; not again its `call` step, which failed because of it.
    assert len(failed) == len(error_runs) == 1
    assert failed[0]["kind"] == "llm"


def _noisy_copy(path: Path, tmp_path: Path) -> Path:
    """A copy of the trace database with a float-noise cost and a triple-wrapped error."""
    copy = tmp_path / "traces.db"
    shutil.copy(path, copy)
    conn = sqlite3.connect(copy)
    conn.execute("update runs set cost_usd = 0.0005399999999999999")
    conn.execute(
        "update steps set error = 'InternalServerError: litellm.InternalServerError: "
        "InternalServerError: upstream said no' where status = 'error'"
    )
    conn.commit()
    conn.close()
    return copy


async def test_costs_are_rounded_for_display_only(traces, tmp_path):
    path, ids = traces
    ds = Datasette([str(_noisy_copy(path, tmp_path))])
    for page in (
        "/traces/run_summary",
        "/traces/slowest_runs?mode=",
        f"/traces/runs/{ids['moa']}",
        "/traces/mode_stats",
    ):
        html = (await get(ds, page)).text
        assert "0.00054" in html and "0.0005399999" not in html, page
    (data,) = await get_json(ds, f"/traces/runs?id={ids['moa']}")
    assert data["cost_usd"] == 0.0005399999999999999  # the data keeps the exact value


async def test_errors_are_shown_once_not_triple_wrapped(traces, tmp_path):
    path, _ = traces
    ds = Datasette([str(_noisy_copy(path, tmp_path))])
    run = rows(path, "select id from runs where status = 'error'")[0]
    step = rows(path, "select id from steps where status = 'error' and kind = 'llm'")[0]
    for page in (
        "/traces/failed_steps?mode=",
        f"/traces/runs/{run['id']}",
        f"/traces/steps/{step['id']}",
        "/traces/steps",
    ):
        html = (await get(ds, page)).text
        assert "InternalServerError: upstream said no" in html, page
        assert "litellm.InternalServerError" not in html, page


def test_plain_error_and_format_cost():
    from composite_cli.datasette.display import format_cost, plain_error

    assert plain_error("InternalServerError: litellm.InternalServerError: InternalServerError: boom") == (
        "InternalServerError: boom"
    )
    assert (
        plain_error("APIConnectionError: litellm.APIConnectionError: network down")
        == "APIConnectionError: network down"
    )
    quoted = "FanoutFailed: only 0 answered (first error: analyst: InternalServerError: litellm.InternalServerError: x)"
    assert (
        plain_error(quoted) == "FanoutFailed: only 0 answered (first error: analyst: InternalServerError: x)"
    )
    assert plain_error("ValueError: a: b") == "ValueError: a: b"
    assert format_cost(0.0005399999999999999) == "0.00054"
    assert format_cost(3.705e-05) == "0.00003705"
    assert format_cost(0.0) == "0"
    assert format_cost(12.345678) == "12.3457"


async def test_legend_has_an_entry_for_every_bar_colour(traces):
    from composite_cli.datasette.timeline import LEGEND
    from composite_cli.engine.registry import known_kinds

    legend_kinds = {kind for entry in LEGEND for kind in entry.kinds}
    assert {*known_kinds(), "llm", "tool", "think", "repl"} <= legend_kinds
    assert len({entry.colour for entry in LEGEND}) == len(LEGEND)  # one colour, one meaning
    path, _ = traces
    ds = Datasette([str(path)])
    run = rows(path, "select id from runs where status = 'error'")[0]
    html = (await get(ds, f"/traces/runs/{run['id']}")).text
    legend = re.search(r'<p class="ct-legend">(.*?)</p>', html, re.S)
    assert legend
    labels = re.findall(r"</i>([^<]+)</span>", legend.group(1))
    assert {"llm", "call", "error", "other"} <= set(labels)
    call_colour = next(e.colour for e in LEGEND if e.label == "call")
    assert re.search(r"\.ct-bar\.kind-call[^{]*\{ background: " + call_colour, html)
    assert "kind-call status-error" in html


async def test_mode_and_model_stats_say_how_many_runs_were_unpriced(tmp_path):
    import sqlite_utils

    from composite_cli.traces.migrations import apply_migrations

    path = tmp_path / "traces.db"
    db = sqlite_utils.Database(path)
    apply_migrations(db)
    runs = [("a", "ok", 1, 0.5), ("b", "ok", 1, None), ("c", "error", 0, None), ("d", "running", 1, None)]
    for run_id, status, calls, cost in runs:
        db.table("runs").insert(
            {"id": run_id, "mode": "moa", "status": status, "calls": calls, "cost_usd": cost}
        )
    for i, (run_id, status, cost) in enumerate(
        [("a", "ok", 0.5), ("b", "ok", None), ("b", "ok", None), ("b", "error", None)]
    ):
        db.table("steps").insert(
            {"id": f"s{i}", "run_id": run_id, "kind": "llm", "model": "m", "status": status, "cost_usd": cost}
        )
    db.conn.close()
    ds = Datasette([str(path)])
    (mode,) = await get_json(ds, "/traces/mode_stats")
    assert (mode["cost_usd"], mode["unpriced_runs"]) == (0.5, 1)  # b; not c (no calls) nor d (running)
    (model,) = await get_json(ds, "/traces/model_stats")
    assert (model["cost_usd"], model["unpriced_calls"], model["unpriced_runs"]) == (0.5, 2, 1)
    assert "unpriced_runs" in (await get(ds, "/traces/mode_stats")).text


async def test_hostile_step_rows_still_make_pages(traces, tmp_path):
    """Damaged or hostile rows (JSON nested too deep, messages of the wrong shape, markup in an
    output, a huge output) make a page, escaped and cut short, never a 500."""
    path, ids = traces
    copy = tmp_path / "traces.db"
    shutil.copy(path, copy)
    calls = rows(path, "select id from steps where run_id = ? and kind = 'llm' order by seq", ids["moa"])
    conn = sqlite3.connect(copy)
    hostile = {
        calls[0]["id"]: ("[" * 100_000 + "]" * 100_000, "<script>alert(1)</script>"),
        calls[1]["id"]: ('{"messages": [1, {"role": null, "content": [{"type": "text"}]}]}', "x" * 50_000),
        calls[2]["id"]: ('{"messages": "nope"}', None),
    }
    for step_id, (request, output) in hostile.items():
        conn.execute("update steps set request_json = ?, output = ? where id = ?", [request, output, step_id])
    conn.commit()
    conn.close()
    ds = Datasette([str(copy)])
    run_page = (await get(ds, f"/traces/runs/{ids['moa']}")).text
    assert "<script>alert(1)</script>" not in run_page and "&lt;script&gt;alert(1)" in run_page
    long_one = details(run_page)[calls[1]["id"]]
    assert f"{50_000 - OUTPUT_MAX_CHARS:,} more characters" in long_one
    assert calls[2]["id"] not in details(run_page)  # no output, no error: nothing to show
    for step_id in hostile:
        html = (await get(ds, f"/traces/steps/{step_id}")).text
        assert 'id="composite-step"' in html and "<script>alert(1)</script>" not in html


def test_step_outputs_shows_leaves_with_the_steps_around_them():
    steps = [
        _step("f", None, 0, 10, kind="fanout", name="proposals"),
        _step("a", "f", 0, 5, kind="llm", name="analyst"),
        _step("b", "f", 0, 8, kind="llm", name="teacher", status="error"),
        _step("c", "f", 0, 8, kind="llm", name="quiet"),
        _step("x", "y", 0, 1, kind="llm", name="cycle"),
        _step("y", "x", 0, 1, kind="llm", name="cycle2"),
    ]
    outputs = {
        "f": {"output": "1. A\n2. B"},
        "a": {"output": "A" * 30, "output_chars": 30},
        "b": {"error": "InternalServerError: litellm.InternalServerError: down"},
        "c": {"output": ""},
        "x": {"output": "loop"},
    }
    shown = step_outputs(steps, outputs, step_url=lambda i: f"/s/{i}", max_chars=10)
    assert [o.step_id for o in shown] == ["a", "b"]  # x and y are each other's parent: not leaves
    a, b = shown
    assert (a.within, a.output, a.more_chars, a.url) == ("proposals", "A" * 10, 20, "/s/a")
    assert (b.error, b.output, b.status) == ("InternalServerError: down", "", "error")


# -- the timeline layout on its own ----------------------------------------------------------------


def _step(id: str, parent: str | None, offset: float, latency: float | None, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "run_id": "r",
        "parent_id": parent,
        "offset_ms": offset,
        "latency_ms": latency,
        "seq": 0,
        **kw,
    }


def test_tree_order_nests_children_and_survives_orphans_and_cycles():
    steps = [
        _step("b", None, 50, 10),
        _step("a", None, 0, 40),
        _step("a2", "a", 5, 30),
        _step("a1", "a", 1, 20),
        _step("orphan", "gone", 60, 5),
        _step("x", "y", 70, 1),
        _step("y", "x", 71, 1),
    ]
    order = [(s["id"], level) for s, level in tree_order(steps)]
    assert order[:4] == [("a", 0), ("a1", 1), ("a2", 1), ("b", 0)]
    assert ("orphan", 0) in order
    assert sorted(i for i, _ in order) == sorted(s["id"] for s in steps)  # every step once


def test_build_timeline_positions_bars_by_offset_and_latency():
    steps = [
        _step("a", None, 0, 100, kind="fanout"),
        _step("b", "a", 50, 150, kind="llm"),
        _step("c", None, 200, None),
    ]
    timeline = build_timeline(
        {"id": "r", "latency_ms": 250}, steps, step_url=lambda i: f"/s/{i}", highlight="b"
    )
    by_id = {b.step_id: b for b in timeline.bars}
    assert timeline.total_ms == 250
    assert (by_id["a"].left_pct, by_id["a"].width_pct) == (0, 40)
    assert (by_id["b"].left_pct, by_id["b"].width_pct) == (20, 60) and by_id["b"].highlight
    assert by_id["c"].running and by_id["c"].width_pct == 20 and by_id["c"].duration_label == "running"
    assert by_id["b"].level == 1 and by_id["b"].url == "/s/b"
    assert timeline.summary["llm_calls"] == 1 and timeline.summary["parallelism"] == 0.6


def test_build_timeline_labels_a_loops_rounds_and_indents_nesting():
    """Issue 17 item 10: reflect's loop rounds were unlabelled in every timeline."""
    steps = [
        _step("loop", None, 0, 300, kind="loop", name="refine"),
        _step("c1", "loop", 10, 40, kind="llm", name="critique"),
        _step("r1", "loop", 60, 40, kind="llm", name="revise"),
        _step("c2", "loop", 110, 40, kind="llm", name="critique"),
        _step("r2", "loop", 160, 40, kind="llm", name="revise"),
        _step("deep", "r2", 170, 10, kind="llm", name="inner"),
    ]
    bars = {b.step_id: b for b in build_timeline(None, steps, step_url=str).bars}
    assert [bars[i].name for i in ("loop", "c1", "r1", "c2", "r2")] == [
        "refine",
        "r1 critique",
        "r1 revise",
        "r2 critique",
        "r2 revise",
    ]
    assert bars["deep"].name == "inner" and bars["deep"].level == 2 and bars["c1"].level == 1


def test_build_timeline_caps_the_number_of_bars():
    steps = [_step(f"s{i}", None, i, 1) for i in range(30)]
    timeline = build_timeline(None, steps, step_url=str, max_bars=10)
    assert len(timeline.bars) == 10 and timeline.hidden == 20 and timeline.run_id == "r"


def test_nice_ticks():
    assert [t.label for t in nice_ticks(1000)] == ["0", "200ms", "400ms", "600ms", "800ms", "1.00s"]
    assert [t.pct for t in nice_ticks(250)][:3] == [0.0, 20.0, 40.0]
    assert nice_ticks(0)[0].label == "0ms"


# -- composite traces browse, and the installed entry point -----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode("utf-8"))


@contextmanager
def server(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a web server command; yield its base URL once it answers; stop it with Ctrl-C."""
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fetch(url + "/-/versions.json")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start: {log.read_text()}")
                time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def browse_server(db: Path, log: Path) -> Iterator[str]:
    """`composite traces browse --db DB --port PORT` in a subprocess."""
    port = free_port()
    code = "from composite_cli.cli.traces import app; app()"
    with server(
        [sys.executable, "-c", code, "browse", "--db", str(db), "--port", str(port)], port, log
    ) as url:
        yield url


def test_browse_serves_the_database_with_metadata_and_timeline(traces, tmp_path):
    path, ids = traces
    with browse_server(path, tmp_path / "browse.log") as url:
        metadata = json.loads(fetch(url + "/-/metadata.json"))
        assert set(metadata["databases"]["traces"]["queries"]) == QUERIES
        settings = json.loads(fetch(url + "/-/settings.json"))
        assert settings["truncate_cells_html"] == 300
        page = fetch(f"{url}/traces/runs/{ids['moa']}")
        assert 'id="composite-timeline"' in page
        assert len(bars(page)) == len(rows(path, "select id from steps where run_id = ?", ids["moa"]))
        assert json.loads(fetch(url + "/traces/mode_stats.json?_shape=array"))
    assert "Serving" in (tmp_path / "browse.log").read_text()


ENTRY_POINT = "composite_cli.datasette.plugin"


def _entry_point_installed() -> bool:
    return any(ep.value == ENTRY_POINT for ep in importlib.metadata.entry_points(group="datasette"))


def test_plain_datasette_loads_the_plugin_through_its_entry_point(traces, tmp_path):
    """`datasette traces.db`, no flags: the plugin comes from the `datasette` entry point.

    Until the package declares it, a throwaway distribution on PYTHONPATH declares the same
    entry point, so this checks what `pip install -e .` will give."""
    path, ids = traces
    env = dict(os.environ)
    if not _entry_point_installed():
        dist = tmp_path / "site" / "composite_entry_point_check-0.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: composite-entry-point-check\nVersion: 0.0\n"
        )
        (dist / "entry_points.txt").write_text(f"[datasette]\ncomposite = {ENTRY_POINT}\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "site"), env.get("PYTHONPATH")]))
    port = free_port()
    datasette = str(Path(sys.executable).with_name("datasette"))
    with server(
        [datasette, "serve", str(path), "--port", str(port)], port, tmp_path / "datasette.log", env
    ) as url:
        plugins = json.loads(fetch(url + "/-/plugins.json"))
        assert any("composite" in p["name"] for p in plugins), plugins
        page = fetch(f"{url}/traces/runs/{ids['moa']}")
        assert page.count('id="composite-timeline"') == 1  # drawn once, not once per registration
        assert len(bars(page)) == len(rows(path, "select id from steps where run_id = ?", ids["moa"]))
        assert set(json.loads(fetch(url + "/-/metadata.json"))["databases"]["traces"]["queries"]) == QUERIES
        assert "composite-json" in fetch(
            url + "/traces/steps/" + rows(path, "select id from steps where kind = 'llm'")[0]["id"]
        )


def test_build_timeline_counts_a_timed_out_step_as_failed():
    # A step's own timeout is status "timeout" (events.FAILED_STEP_STATUSES): it counts as failed.
    steps = [
        _step("a", None, 0, 10, status="ok"),
        _step("b", None, 10, 10, status="timeout", error="step 'b' timed out after 0.01s"),
        _step("c", None, 20, 10, status="error", error="boom"),
        _step("d", None, 30, 10, status="skipped", error="tool not allowed"),
    ]
    assert build_timeline(None, steps, step_url=str).summary["errors"] == 2
