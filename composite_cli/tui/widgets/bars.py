"""Horizontal Unicode bars (a histogram that needs no plotting library)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

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
