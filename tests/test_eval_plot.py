"""Eval charts (composite_cli/evals/plot.py): `composite eval report --plot FILE.svg|.png`, and the
same chart data the TUI and the Datasette eval page use."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composite_cli.cli.main import app
from composite_cli.errors import PlotError
from composite_cli.evals.plot import chart_points, svg_text, unknown_note, write_plot

pytest.importorskip("matplotlib")

SVG = "{http://www.w3.org/2000/svg}"


def report(costs=(0.001, 0.004, 0.002)) -> dict:
    modes = []
    for name, score, cost, latency in zip(
        ("direct", "moa-v1", "moa-lite"), (0.5, 0.875, 0.125), costs, (900.0, 4200.0, 2100.0), strict=True
    ):
        modes.append(
            {
                "mode": name,
                "score": score,
                "ci": [max(0.0, score - 0.2), min(1.0, score + 0.1)],
                "binary": True,
                "cost_usd_mean": cost,
                "latency_ms_p50": latency,
            }
        )
    return {
        "eval_run": {"file": "evals/x.jsonl", "cases": 8, "modes": [m["mode"] for m in modes]},
        "modes": modes,
        "pareto": {"cost": ["direct", "moa-v1"], "latency": ["direct", "moa-v1"]},
    }


def texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]


def test_chart_points_carry_the_ci_and_the_front_and_latency_in_seconds():
    points = chart_points(report(), "latency")
    assert [p.mode for p in points] == ["direct", "moa-v1", "moa-lite"]
    assert points[0].x == pytest.approx(0.9) and points[0].low == pytest.approx(0.3)
    assert [p.on_front for p in points] == [True, True, False]


def test_the_svg_has_both_charts_a_legend_per_mode_and_the_pareto_front():
    words = texts(svg_text(report()))
    assert "quality vs cost" in words and "quality vs latency" in words
    for mode in ("direct", "moa-v1", "moa-lite"):
        assert words.count(mode) == 2  # once in each chart's legend, never a label on a point
    assert words.count("Pareto front") == 2
    assert "score, % (95% CI)" in words


def test_tick_labels_are_plain_decimals():
    cheap = report(costs=(0.000012, 0.00005, 0.00003))
    words = texts(svg_text(cheap))
    assert not any("e-0" in word for word in words)
    assert any(word.startswith("0.0000") for word in words)


def test_unknown_costs_are_said_on_the_cost_chart_not_drawn_as_zero():
    words = texts(svg_text(report(costs=(None, None, None))))
    assert "cost unknown (a model has no price) for every mode" in words
    assert words.count("direct") == 1  # only the latency chart has points
    some = report(costs=(0.001, None, 0.002))
    assert unknown_note(chart_points(some, "cost"), "cost") == "cost unknown (a model has no price): moa-v1"


def test_hostile_mode_and_file_names_are_text_in_the_svg():
    hostile = report()
    hostile["modes"][0]["mode"] = "<script>alert(1)</script>&"
    hostile["eval_run"]["file"] = "</svg><img src=x onerror=alert(1)>.jsonl"
    svg = svg_text(hostile)
    assert "<script" not in svg and "<img" not in svg
    assert "<script>alert(1)</script>&" in texts(svg)


def test_png_is_a_png(tmp_path: Path):
    out = write_plot(report(), tmp_path / "chart.PNG")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("name", "said"),
    [("chart.pdf", "must end in .svg or .png, not '.pdf'"), ("chart", "not no extension")],
)
def test_a_bad_extension_is_one_line(tmp_path: Path, name: str, said: str):
    with pytest.raises(PlotError, match=said):
        write_plot(report(), tmp_path / name)


DRY = """
profile: dry
profiles:
  dry:
    "*": {model: openai/gpt-4o-mini, mock_response: "The answer is Paris, 4.", mock_delay: 0.01}
"""
CASES = [
    {"id": "paris", "input": "Capital of France?", "expected": "Paris", "scorer": "contains"},
    {"id": "rome", "input": "Capital of Italy?", "expected": "Rome", "scorer": "contains"},
]


def test_cli_eval_report_plot_writes_svg_and_png_and_refuses_bad_paths(isolated_home: Path):
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    (isolated_home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    cli = CliRunner()
    ran = cli.invoke(app, ["eval", "e.jsonl", "--modes", "direct,moa", "--json"])
    assert ran.exit_code == 0, ran.output
    svg = cli.invoke(app, ["eval", "report", "latest", "--plot", "chart.svg", "--json"])
    assert svg.exit_code == 0, svg.output
    json.loads(svg.stdout)  # the report on stdout stays JSON; the chart's line is on stderr
    assert "chart.svg" in svg.stderr
    words = texts((isolated_home / "chart.svg").read_text(encoding="utf-8"))
    assert "direct" in words and "moa-v1" in words and "quality vs latency" in words
    png = cli.invoke(app, ["eval", "report", "latest", "--plot", "chart.png"])
    assert png.exit_code == 0 and (isolated_home / "chart.png").read_bytes()[:4] == b"\x89PNG"
    for bad, said in (("chart.jpg", "must end in .svg or .png"), ("no/such/dir/c.svg", "does not exist")):
        refused = cli.invoke(app, ["eval", "report", "latest", "--plot", bad])
        assert refused.exit_code != 0
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0] and "Traceback" not in refused.output


@pytest.fixture
def dry_eval(isolated_home: Path) -> str:
    """An eval of direct and moa on the dry profile in `isolated_home`; its id."""
    (isolated_home / "composite.yaml").write_text(DRY, encoding="utf-8")
    (isolated_home / "e.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    ran = CliRunner().invoke(app, ["eval", "e.jsonl", "--modes", "direct,moa", "--json"])
    assert ran.exit_code == 0, ran.output
    return str(json.loads(ran.stdout)["eval_run"]["id"])


async def test_the_datasette_eval_run_page_shows_the_same_chart_inline(isolated_home: Path, dry_eval: str):
    from datasette.app import Datasette

    from composite_cli.datasette import plugin

    eval_id = dry_eval
    [db] = [p for p in isolated_home.rglob("*.db") if "traces" in p.name]
    registered = plugin.register()
    try:
        ds = Datasette([str(db)])
        await ds.invoke_startup()
        name = db.stem
        page = (await ds.client.get(f"/{name}/eval_runs/{eval_id}")).text
        other = await ds.client.get(f"/{name}/eval_runs/nosuch")
    finally:
        if registered:
            plugin.unregister()
    chart = page[page.index('id="composite-eval-chart"') :]
    svg = chart[chart.index("<svg") : chart.index("</svg>") + len("</svg>")]
    words = texts(svg)
    assert "quality vs cost" in words and "quality vs latency" in words
    assert "direct" in words and "moa-v1" in words
    assert f"composite eval report {eval_id} --plot chart.svg" in chart
    assert other.status_code == 404  # Datasette's own answer for a missing row, not a chart error


def test_without_matplotlib_it_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if it were not installed
    with pytest.raises(PlotError, match=r"pip install 'composite-cli\[plot\]'"):
        write_plot(report(), tmp_path / "chart.svg")
    assert not (tmp_path / "chart.svg").exists()
