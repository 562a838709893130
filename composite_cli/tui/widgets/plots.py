"""Plots (textual-plotext): quality against cost or latency per mode, requests over time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual_plotext import PlotextPlot

# plotext colour names, one per series, readable on light and dark backgrounds
PALETTE = ("blue+", "orange+", "green+", "magenta+", "cyan+", "red+", "yellow+", "gray+")


class QualityPlot(PlotextPlot):
    """A scatter of modes: score (y) against cost or latency (x), each mode its own colour."""

    def __init__(self, title: str, x_label: str, *, id: str | None = None):
        super().__init__(id=id)
        self.title = title
        self.x_label = x_label
        self.points: list[tuple[str, float, float]] = []
        self.note = ""

    def show(self, points: Sequence[tuple[str, float | None, float | None]]) -> None:
        """(mode, x, score) points; points with an unknown x or score are left out and noted."""
        self.points = [(m, float(x), float(y)) for m, x, y in points if x is not None and y is not None]
        missing = [m for m, x, y in points if x is None or y is None]
        self.note = f" ({', '.join(missing)}: unknown)" if missing else ""
        self.replot()

    def on_mount(self) -> None:
        super().on_mount()
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title + self.note)
        plt.xlabel(self.x_label)
        if not self.points:
            self.refresh()
            return
        xs = [p[1] for p in self.points]
        low, high = min(xs), max(xs)
        pad = (high - low) * 0.25 or (abs(high) * 0.5 or 1.0)
        for i, (mode, x, y) in enumerate(self.points):
            color = PALETTE[i % len(PALETTE)]
            plt.scatter([x], [y], marker="●", color=color)
            plt.text(mode, x + pad * 0.08, y, color=color)  # the label sits just right of its point
        plt.xlim(max(0.0, low - pad) if low >= 0 else low - pad, high + pad)
        plt.ylim(0, 1.05)
        plt.yticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"])
        self.refresh()


class RequestsPlot(PlotextPlot):
    """Requests per time bucket, stacked by mode."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.labels: list[str] = []
        self.series: dict[str, list[int]] = {}

    def show(self, labels: list[str], series: dict[str, list[int]]) -> None:
        self.labels, self.series = labels, series
        self.replot()

    def on_mount(self) -> None:
        super().on_mount()
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("requests over time by mode")
        if not self.series or not self.labels:
            self.refresh()
            return
        modes = list(self.series)
        # only buckets with requests get a bar (an empty one would still draw a sliver)
        positions = [i for i in range(len(self.labels)) if any(self.series[m][i] for m in modes)]
        # plotext takes a label and a colour per series (its type hints say otherwise)
        options: dict[str, Any] = {
            "labels": modes,
            "color": [PALETTE[i % len(PALETTE)] for i in range(len(modes))],
        }
        plt.stacked_bar(
            positions, [[self.series[m][i] for i in positions] for m in modes], width=0.8, **options
        )
        step = max(1, len(self.labels) // 4)
        ticks = list(range(len(self.labels)))[::step]
        plt.xticks([float(t) for t in ticks], [self.labels[i] for i in ticks])
        plt.xlim(-1, len(self.labels))
        top = max((sum(values) for values in zip(*self.series.values(), strict=True)), default=1)
        ticks_y = _integer_ticks(top)
        plt.yticks([float(t) for t in ticks_y], [str(t) for t in ticks_y])
        self.refresh()


def _integer_ticks(top: int) -> list[int]:
    """At most five whole-number ticks from 0 to `top` (counts are never fractional)."""
    step = max(1, -(-top // 4))
    return list(range(0, top + step, step))
