"""Eval charts a paper can print: score (with its 95% CI) against mean cost and against p50
latency, one marker per mode, the Pareto front marked. One owner for what a chart shows
(`chart_points`), used by `composite eval report --plot`, the Datasette eval page and the TUI.
Drawing uses matplotlib (the `plot` extra: `pip install 'composite-cli[plot]'`), imported only
when a chart is drawn."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composite_cli.errors import PlotError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = (".svg", ".png")
# one marker and colour per mode, told apart in print without colour too
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
AXES = (
    # axis name in report["pareto"], the mode summary's key, the x label, the scale to the label's unit
    ("cost", "cost_usd_mean", "mean cost per case (USD)", 1.0),
    ("latency", "latency_ms_p50", "p50 latency per case (s)", 0.001),
)


@dataclass(frozen=True)
class Point:
    mode: str
    x: float | None  # None: unknown (no price for a model, or no latency recorded)
    score: float | None
    low: float | None
    high: float | None
    on_front: bool


def chart_points(report: dict[str, Any], axis: str) -> list[Point]:
    """The chart's points for `axis` ("cost" or "latency"), every mode of the report in its order."""
    key, scale = next((k, s) for name, k, _, s in AXES if name == axis)
    front = set(report.get("pareto", {}).get(axis, []))
    points = []
    for m in report["modes"]:
        ci = m.get("ci") or [None, None]
        raw = m.get(key)
        points.append(
            Point(
                mode=str(m["mode"]),
                x=None if raw is None else float(raw) * scale,
                score=m.get("score"),
                low=ci[0],
                high=ci[1],
                on_front=m["mode"] in front,
            )
        )
    return points


def unknown_note(points: list[Point], axis: str) -> str:
    """What the chart cannot show, in words: '' when every mode has a point."""
    what = "cost unknown (a model has no price)" if axis == "cost" else "no latency recorded"
    missing = [p.mode for p in points if p.score is not None and p.x is None]
    unscored = [p.mode for p in points if p.score is None]
    notes = []
    if missing and len(missing) == len([p for p in points if p.score is not None]):
        notes.append(f"{what} for every mode")
    elif missing:
        notes.append(f"{what}: {', '.join(missing)}")
    if unscored:
        notes.append(f"no scored result: {', '.join(unscored)}")
    return "; ".join(notes)


def _score_scale(report: dict[str, Any]) -> tuple[float, str]:
    """Scores of pass/fail modes are shown as percentages."""
    binary = all(m.get("binary", True) for m in report["modes"] if m.get("score") is not None)
    return (100.0, "score, % (95% CI)") if binary else (1.0, "mean score (95% CI)")


def _draw(ax: Axes, report: dict[str, Any], axis: str, label: str) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    points = chart_points(report, axis)
    scale, y_label = _score_scale(report)
    ax.set_xlabel(label)
    ax.set_ylabel(y_label)
    ax.set_title(f"quality vs {axis}")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    shown = [p for p in points if p.x is not None and p.score is not None]
    for i, p in enumerate(points):
        if p not in shown:
            continue
        assert p.x is not None and p.score is not None
        y = p.score * scale
        err = None
        if p.low is not None and p.high is not None:
            err = [[max(0.0, y - p.low * scale)], [max(0.0, p.high * scale - y)]]
        ax.errorbar(
            [p.x],
            [y],
            yerr=err,
            fmt=MARKERS[i % len(MARKERS)],
            color=COLOURS[i % len(COLOURS)],
            markersize=7,
            capsize=4,
            # off the front: a hollow marker
            markerfacecolor=COLOURS[i % len(COLOURS)] if p.on_front else "white",
            label=p.mode,
        )
    front = sorted((p.x, p.score * scale) for p in shown if p.on_front and p.x is not None and p.score)
    if len(front) > 1:
        xs, ys = zip(*front, strict=True)
        ax.plot(
            xs,
            ys,
            drawstyle="steps-post",
            linestyle="--",
            color="#555555",
            linewidth=1,
            label="Pareto front",
            zorder=0,
        )
    note = unknown_note(points, axis)
    if not shown:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(
            0.5, 0.5, note or "nothing to show", ha="center", va="center", transform=ax.transAxes, wrap=True
        )
        return
    if note:  # under the title, wrapped to the chart's width
        ax.set_title(f"quality vs {axis}\n" + "\n".join(textwrap.wrap(f"({note})", 60)), fontsize=10)
    low = min(0.0, *(p.low * scale for p in shown if p.low is not None))
    high = max(1.0 * scale, *(p.high * scale for p in shown if p.high is not None))
    margin = (high - low) * 0.03  # a marker at 0% or 100% is drawn whole, above the axis
    ax.set_ylim(low - margin, high + margin)
    # room right of the last point (its whisker and marker stay inside), at most 6 plain ticks
    ax.set_xlim(0, max(p.x for p in shown if p.x is not None) * 1.08 or 1.0)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _plain(value)))
    ax.legend(fontsize=8, loc="best", title="filled: on the front", title_fontsize=7)


def _plain(value: float) -> str:
    """A tick label in plain decimals: 0.000015, not 1.5e-05."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def figure(report: dict[str, Any]) -> Figure:
    """Both charts side by side, titled with the eval's file and size."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(
            "Charts need matplotlib: pip install 'composite-cli[plot]' (or pip install matplotlib)"
        ) from None
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ev = report["eval_run"]
    fig.suptitle(f"{Path(str(ev['file'])).name}: {ev['cases']} cases × {len(ev['modes'])} modes", fontsize=11)
    left, right = fig.subplots(1, 2)
    for ax, (axis, _, label, _) in zip((left, right), AXES, strict=True):
        _draw(ax, report, axis, label)
    return fig


def svg_text(report: dict[str, Any]) -> str:
    """The charts as one SVG document (the Datasette eval page shows it inline)."""
    out = io.StringIO()
    _save(figure(report), out, "svg")
    return out.getvalue()


def _save(fig: Figure, target: Any, fmt: str) -> None:
    import matplotlib

    # the same report gives the same file (no date, fixed ids)
    with matplotlib.rc_context({"svg.hashsalt": "composite", "svg.fonttype": "none"}):
        metadata = {"Date": None} if fmt == "svg" else {"Software": "composite"}
        fig.savefig(target, format=fmt, metadata=metadata, dpi=150)


def check_path(path: Path) -> str:
    """The chart format for `path` ("svg" or "png"'s suffix), or PlotError naming what is wrong."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        shown = repr(suffix) if suffix else "no extension"
        raise PlotError(f"--plot {path}: the file must end in .svg or .png, not {shown}")
    if not path.parent.is_dir():
        raise PlotError(f"--plot {path}: the folder {path.parent} does not exist")
    return suffix


def write_plot(report: dict[str, Any], path: Path) -> Path:
    """Write the charts to `path`, an .svg or .png file. Raises PlotError with one line."""
    suffix = check_path(path)
    fig = figure(report)
    try:
        with path.open("wb") as out:
            _save(fig, out, suffix[1:])
    except OSError as exc:
        raise PlotError(f"--plot {path}: cannot write it ({exc.strerror or exc})") from None
    return path
