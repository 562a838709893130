"""Plots: quality against cost or latency per mode, drawn with text cells."""

from __future__ import annotations

import math

from rich.console import Console, RenderableType
from rich.text import Text
from textual.widget import Widget

from composite_cli.evals.plot import Point

# A marker and a colour per mode (the same in both charts and in the comparison table), told apart
# by shape without colour too. Eight hues at one relative luminance (0.155), which keeps a contrast
# of at least 3:1 (WCAG) on the dark theme's background and on the light theme's grey
# (tests/test_tui_snapshots_ta.py checks every text of the Evals screen in both).
MARKERS = ("●", "■", "▲", "◆", "★", "✚", "▼", "✖")
COLOURS = ("#1367e5", "#b54f05", "#127e30", "#bc22bf", "#077989", "#da1818", "#876b07", "#6d6d6d")


def mode_marker(index: int) -> Text:
    """The marker of the mode at `index` in the report, in its colour."""
    return Text(MARKERS[index % len(MARKERS)], style=f"bold {COLOURS[index % len(COLOURS)]}")


class QualityPlot(Widget):
    """Score (y, with its 95% CI as a whisker) against cost or latency (x), one marker per mode,
    drawn with text cells to the widget's size. Modes are named in a legend under the chart, never
    by labels next to their points (they overwrite each other when points are close); the y axis
    is labelled at each point's own score, so a point never sits on a row labelled otherwise.
    With no point to draw (e.g. every cost unknown) it shows the note alone."""

    DEFAULT_CSS = """
    QualityPlot { height: 1fr; padding: 0 1; }
    """

    def __init__(self, title: str, x_unit: str, *, id: str | None = None):
        super().__init__(id=id)
        self.title = title
        self.x_unit = x_unit  # "$" or "s": how x tick labels are written
        self.points: list[Point] = []
        self.note = ""

    def show(self, points: list[Point], note: str = "") -> None:
        """The chart's points (evals.plot.chart_points: every mode, in the report's order) and what
        it cannot show, in words (evals.plot.unknown_note)."""
        self.points, self.note = points, note
        self.refresh(layout=True)

    @property
    def drawable(self) -> list[tuple[int, Point]]:
        return [(i, p) for i, p in enumerate(self.points) if p.x is not None and p.score is not None]

    def render(self) -> RenderableType:
        width, height = self.content_size.width, self.content_size.height
        out = Text(self.title, style="bold", no_wrap=False)
        drawable = self.drawable
        note = Text(self.note, style="italic") if self.note else Text()
        if not drawable:
            out.append("\n")
            out.append_text(note if self.note else Text("no eval selected", style="dim"))
            return out
        legend = self._legend(width)
        notes = _wrap(note, width) if self.note else []
        rows = height - 1 - 2 - len(notes)  # title, the x axis and its labels, the notes
        if rows - len(legend) >= 5:  # the legend under the chart when it leaves room to read it
            rows -= len(legend)
        else:
            legend = []  # the comparison table shows each mode's marker too
        if rows < 3 or width < 20:
            out.append("\n")
            out.append("(too small to draw: make the terminal larger)", style="dim")
            return out
        out.append("\n")
        for line in [*self._grid(drawable, width, rows), *legend, *notes]:
            out.append_text(line)
            out.append("\n")
        out.rstrip()
        return out

    def _legend(self, width: int) -> list[Text]:
        items = [mode_marker(i) + Text(f" {p.mode}") for i, p in enumerate(self.points)]
        lines: list[Text] = []
        line = Text()
        for item in items:
            if line.cell_len and line.cell_len + 2 + item.cell_len > width:
                lines.append(line)
                line = Text()
            if line.cell_len:
                line.append("  ")
            line.append_text(item)
        return [*lines, line] if line.cell_len else lines

    def _grid(self, drawable: list[tuple[int, Point]], width: int, rows: int) -> list[Text]:
        scale = 100.0
        lows = [p.low if p.low is not None else p.score for _, p in drawable]
        highs = [p.high if p.high is not None else p.score for _, p in drawable]
        y_lo = max(0.0, math.floor(min(v for v in lows if v is not None) * 10) / 10)
        y_hi = min(1.0, math.ceil(max(v for v in highs if v is not None) * 10) / 10)
        if y_hi <= y_lo:
            y_lo, y_hi = max(0.0, y_lo - 0.1), min(1.0, y_hi + 0.1)

        def row_of(y: float) -> int:  # 0 is the top row
            return round((y_hi - y) / (y_hi - y_lo) * (rows - 1))

        def row_value(row: int) -> float:
            return y_hi - (y_hi - y_lo) * row / (rows - 1)

        xs = [p.x for _, p in drawable if p.x is not None]
        x_lo, x_hi = min(xs), max(xs)
        pad = (x_hi - x_lo) * 0.1 or (abs(x_hi) * 0.1 or 1.0)
        x_lo, x_hi = max(0.0, x_lo - pad) if x_lo >= 0 else x_lo - pad, x_hi + pad
        label_width = 5  # "100%" and the axis
        cols = width - label_width

        def col_of(x: float) -> int:
            return round((x - x_lo) / (x_hi - x_lo) * (cols - 1))

        cells: list[list[tuple[str, str]]] = [[(" ", "")] * cols for _ in range(rows)]
        on_row: dict[int, set[int]] = {}  # row -> the whole percents of the points on it
        placed: set[tuple[int, int]] = set()
        spots = []
        for i, p in drawable:
            assert p.x is not None and p.score is not None
            row, col = row_of(p.score), col_of(p.x)
            while (row, col) in placed and col < cols - 1:  # two modes in one cell: side by side
                col += 1
            placed.add((row, col))
            spots.append((i, p, row, col))
            on_row.setdefault(row, set()).add(round(p.score * scale))
        for i, p, row, col in spots:  # whiskers first, markers over them
            colour = COLOURS[i % len(COLOURS)]
            top = row_of(p.high) if p.high is not None else row
            bottom = row_of(p.low) if p.low is not None else row
            for r in range(top, bottom + 1):
                cells[r][col] = ("┬" if r == top else "┴" if r == bottom else "│", colour)
        for i, _, row, col in spots:
            cells[row][col] = (MARKERS[i % len(MARKERS)], f"bold {COLOURS[i % len(COLOURS)]}")
        labels = {
            # a point's own score; "~" and the row's value when points of different scores share it
            row: f"{min(found):>3}%" if len(found) == 1 else f"~{round(row_value(row) * scale):>2}%"[-4:]
            for row, found in on_row.items()
        }
        for row in (0, rows - 1):  # the ends, where no point is labelled
            if all(abs(r - row) > 1 for r in labels):
                labels[row] = f"{round(row_value(row) * scale):>3}%"
        lines = []
        for r in range(rows):
            line = Text(f"{labels[r]}┤" if r in labels else "    │", style="dim")
            for char, style in cells[r]:
                line.append(char, style=style)
            lines.append(line)
        lines.append(Text(" " * (label_width - 1) + "└" + "─" * cols, style="dim"))
        lines.append(self._x_labels(x_lo, x_hi, label_width, cols))
        return lines

    def _x_labels(self, x_lo: float, x_hi: float, left: int, cols: int) -> Text:
        low, high = _x_text(x_lo, self.x_unit), _x_text(x_hi, self.x_unit)
        gap = max(1, cols - len(low) - len(high))
        return Text(" " * left + low + " " * gap + high, style="dim")


def _x_text(value: float, unit: str) -> str:
    if unit == "$":  # two significant digits, never in e-notation ($0.000011, not $1.1e-05)
        places = 2 if value >= 0.01 or value <= 0 else 1 - math.floor(math.log10(value))
        return f"${value:.{places}f}"
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"


def _wrap(text: Text, width: int) -> list[Text]:
    lines = text.wrap(Console(width=max(10, width)), max(10, width))
    return list(lines)
