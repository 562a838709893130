"""Unicode bars that need no plotting library: a horizontal histogram, and stacked columns (the
dashboard's requests over time by mode, where every non-zero mode gets at least one cell)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(value: float, maximum: float, width: int) -> str:
    """A bar of `width` cells at full scale, drawn to an eighth of a cell."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = round(value / maximum * width * 8)
    full, rest = divmod(max(1, eighths), 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def histogram(
    rows: Sequence[tuple[str, float]], width: int, *, style: str = "", value_format: str = "{:g}"
) -> Text:
    """`label │████▌ 12` lines, one per row, scaled to the largest value."""
    label_w = max((len(label) for label, _ in rows), default=0)
    top = max((value for _, value in rows), default=0)
    bar_w = max(4, width - label_w - 10)
    out = Text()
    for i, (label, value) in enumerate(rows):
        if i:
            out.append("\n")
        out.append(f"{label:>{label_w}} │", style="dim")
        out.append(bar(value, top, bar_w).ljust(bar_w), style=style)
        out.append(" " + value_format.format(value))
    return out


# Mode colours of the stacked chart (Tableau 10, readable as blocks on dark and light themes).
SERIES_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def _segments(counts: Sequence[int], top: int, height: int) -> list[int]:
    """Cells of each non-zero count in a column of `height` cells at full scale `top`: in
    proportion, but at least one each (a mode with one request among hundreds stays visible),
    the largest trimmed when the minimums overflow the column."""
    cells = [0 if c <= 0 else max(1, round(c / top * height)) for c in counts]
    while sum(cells) > height and max(cells) > 1:
        cells[cells.index(max(cells))] -= 1
    return cells


def _legend(names: Sequence[str], totals: Sequence[int], width: int) -> list[Text]:
    """`█ name total` entries, as many per line as fit in `width`."""
    lines = [Text()]
    for k, (name, total) in enumerate(zip(names, totals, strict=True)):
        entry = Text()
        entry.append("█ ", style=SERIES_COLORS[k % len(SERIES_COLORS)])
        entry.append(f"{name} {total}")
        if lines[-1].cell_len and lines[-1].cell_len + 2 + entry.cell_len > width:
            lines.append(Text())
        if lines[-1].cell_len:
            lines[-1].append("  ")
        lines[-1].append_text(entry)
    return lines


def stacked_columns(
    labels: Sequence[str], series: dict[str, list[int]], width: int, height: int, *, title: str = ""
) -> Text:
    """A column per bucket of `labels`, stacked by series (bottom: the first), with a y scale,
    the first, middle and last bucket labels, and a legend of each series' total below."""
    names = list(series)
    totals = [sum(series[n][i] for n in names) for i in range(len(labels))]
    top = max(totals, default=0)
    out = Text(no_wrap=True, overflow="crop")
    if title:
        out.append(title.center(width).rstrip() + "\n", style="bold")
    if not names or not labels or top <= 0:
        return out.append("No requests in this window.", style="dim")
    legend = _legend(names, [sum(series[n]) for n in names], width)
    axis_w = len(str(top)) + 1
    plot_h = max(2, height - 1 - len(legend) - (1 if title else 0))
    col_w = max(1, (width - axis_w) // len(labels))
    bar_w = max(1, col_w - 1) if col_w > 2 else col_w
    columns = [_segments([series[n][i] for n in names], top, plot_h) for i in range(len(labels))]
    for row in range(plot_h, 0, -1):  # top row first
        tick = str(top) if row == plot_h else "0" if row == 1 else ""
        out.append(f"{tick:>{axis_w - 1}}│", style="dim")
        for cells in columns:
            filled, style = 0, ""
            for k, n_cells in enumerate(cells):
                filled += n_cells
                if row <= filled and n_cells:
                    style = SERIES_COLORS[k % len(SERIES_COLORS)]
                    break
            out.append(("█" * bar_w).ljust(col_w) if style else " " * col_w, style=style or None)
        out.append("\n")
    axis = [" "] * (col_w * len(labels))
    for i in sorted({0, len(labels) // 2, len(labels) - 1}):
        text = labels[i]
        start = min(max(0, i * col_w), max(0, len(axis) - len(text)))
        if all(ch == " " for ch in axis[max(0, start - 1) : start + len(text)]):
            axis[start : start + len(text)] = text
    out.append(" " * axis_w + "".join(axis), style="dim")
    for line in legend:
        out.append("\n").append_text(line)
    return out


class StackedBars(Widget):
    """Requests per time bucket stacked by mode (stacked_columns), drawn to the widget's size."""

    def __init__(self, title: str = "", *, id: str | None = None):
        super().__init__(id=id)
        self.title = title
        self.labels: list[str] = []
        self.series: dict[str, list[int]] = {}

    def show(self, labels: list[str], series: dict[str, list[int]]) -> None:
        self.labels, self.series = labels, series
        self.refresh()

    def render(self) -> Text:
        size = self.content_size
        return stacked_columns(self.labels, self.series, size.width, size.height, title=self.title)
