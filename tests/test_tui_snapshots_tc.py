"""Snapshot tests of the Evals screen's plots (issue 17, item 4): a marker per mode, 95% CI
whiskers, a legend instead of labels that overwrite each other, a note instead of an empty box
when costs are unknown, and a 12.5% score not drawn on the 0% row; at 80x24 and 160x48, in the
dark and the light theme. Update with
`pytest tests/test_tui_snapshots_tc.py --snapshot-update` after looking at the new SVGs."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_support import scripted_app, seeded_db, settle

from composite_cli.traces.eval_records import begin_eval, finish_eval
from composite_cli.traces.recorder import iso
from composite_cli.traces.store import TraceStore
from composite_cli.tui.demo import T0, fanout_script
from composite_cli.tui.demo_data import record_results

# mode: (pass pattern over 8 cases, latency s, cost per case or None when unpriced). Two modes
# with close latencies (labels next to their points would overwrite each other) and a 12.5% one.
UNPRICED = {
    "direct": ("10000000", 0.80, None),
    "moa-v1": ("11111101", 0.85, None),
    "reflect-v1": ("11110100", 0.90, None),
}


def seed_unpriced_eval(db: Path) -> Path:
    store = TraceStore(db)
    store.open()
    eval_id = "demo-eval-0002"
    begin_eval(
        store,
        eval_run_id=eval_id,
        file="evals/arithmetic.jsonl",
        file_hash="1" * 64,
        modes=list(UNPRICED),
        profile="local",
        settings={"repeats": 1},
        cases=8,
        created_at=iso(T0 - 60),  # the newest eval: the one shown first
    )
    record_results(store, eval_id, UNPRICED, latency_step=0.01, at=T0 - 50)
    finish_eval(store, eval_id, "done", finished_at=iso(T0 - 50))
    store.close()
    return db


async def _shown(pilot) -> None:
    await pilot.pause()
    await settle(pilot)
    await pilot.pause(0.1)
    await settle(pilot)


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("priced", [True, False], ids=["priced", "unpriced"])
def test_eval_plots(snap_compare, isolated_home: Path, theme: str, size: tuple[int, int], priced: bool):
    db = seeded_db(isolated_home)
    if not priced:
        seed_unpriced_eval(db)
    app = scripted_app(isolated_home, [fanout_script(4)], db=db, screen="evals")

    async def run_before(pilot):
        pilot.app.theme = theme
        await _shown(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def _plot_lines(app, axis: str) -> list[str]:
    from composite_cli.tui.widgets.plots import QualityPlot

    plot = app.screen.query_one(f"#plot-{axis}", QualityPlot)
    return plot.render().plain.splitlines()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_a_low_score_sits_on_a_row_labelled_with_it_and_modes_are_in_a_legend(
    isolated_home: Path, size: tuple[int, int]
):
    db = seed_unpriced_eval(seeded_db(isolated_home))
    app = scripted_app(isolated_home, [fanout_script(4)], db=db, screen="evals")
    async with app.run_test(size=size) as pilot:
        await _shown(pilot)
        lines = _plot_lines(app, "latency")
        [direct] = [line for line in lines if "●" in line and "direct" not in line]
        assert direct.lstrip().startswith("12%┤")  # 12.5%, not on a row labelled 0%
        [moa] = [line for line in lines if "■" in line and "moa-v1" not in line]
        assert moa.lstrip().startswith("88%┤")
        assert any("┬" in line for line in lines) and any("┴" in line for line in lines)  # CI whiskers
        names = ("direct", "moa-v1", "reflect-v1")
        # no label on the chart (they overwrote each other: "direcmoa-v1"); a legend when there is room
        chart = [line for line in lines if "┤" in line or line.lstrip().startswith("│")]
        assert not any(name in line for line in chart for name in names)
        if size == (160, 48):
            assert "● direct  ■ moa-v1  ▲ reflect-v1" in lines
        cost = _plot_lines(app, "cost")
        assert "cost unknown" in " ".join(cost) and not any("┤" in line for line in cost)  # a note, no axes
        table = app.screen.query_one("#eval-report")
        assert table.get_row_at(0)[0].plain.startswith("● direct")  # the table names each marker too
        # the one cost format (units.cost): no "unknown", "?" or $0.000000 for unpriced results
        assert table.get_row_at(0)[9].plain == "8 unpriced"


async def test_priced_costs_are_written_the_one_way(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)], db=seeded_db(isolated_home), screen="evals")
    async with app.run_test(size=(160, 48)) as pilot:
        await _shown(pilot)
        table = app.screen.query_one("#eval-report")
        assert [table.get_row_at(i)[9].plain for i in range(3)] == ["$0.00004", "$0.00021", "$0.00033"]


async def test_points_of_different_scores_on_one_row_label_it_approximately(isolated_home: Path):
    app = scripted_app(isolated_home, [fanout_script(4)], db=seeded_db(isolated_home), screen="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await _shown(pilot)
        lines = _plot_lines(app, "latency")
        # moa-v1 (83.3%) and reflect-v1 (75%) fall on one row at this height: not labelled 83%
        [shared] = [line for line in lines if "■" in line and "▲" in line]
        assert shared.lstrip().startswith("~") and shared.index("┤") == 4
