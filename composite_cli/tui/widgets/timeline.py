"""A Gantt timeline of a run: one bar per step or model call, indented two cells per level of
nesting. Parallel experts overlap in time, so their bars sit side by side; recursive sub-calls sit
deeper; the steps of a loop are labelled with their round (`r2 critique (reflect)`). Bars are
coloured by status through the one status map (units.STATUS_STYLE); an unknown status is neutral."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from composite_cli.tui import units
from composite_cli.tui.run_state import Span

# units.STATUS_STYLE's theme colour → the component class that carries it here
_CLASS_OF_STYLE = {
    "accent": "timeline--running",
    "success": "timeline--ok",
    "warning": "timeline--partial",
    "error": "timeline--error",
}
INDENT = 2  # cells per level of nesting


def status_class(status: str) -> str:
    """The component class of a bar with this status (muted: unknown or skipped)."""
    return _CLASS_OF_STYLE.get(units.STATUS_STYLE.get(status, ""), "timeline--muted")


def round_labels(spans: Sequence[Span]) -> list[str]:
    """Each span's label, with `rN ` before the direct children of a loop step (`... (loop)`) in
    its Nth round. Spans come in start order (a parent before its children); a round starts
    each time the loop's first child starts again."""
    out: list[str] = []
    loops: list[list[Any]] = []  # open loops: [depth, label of the first child, round]
    for span in spans:
        while loops and span.depth <= loops[-1][0]:
            loops.pop()
        label = span.label
        if loops and span.depth == loops[-1][0] + 1:
            loop = loops[-1]
            if loop[1] is None or span.label == loop[1]:
                loop[1], loop[2] = span.label, loop[2] + 1
            label = f"r{loop[2]} {label}"
        if span.label.endswith("(loop)"):
            loops.append([span.depth, None, 0])
        out.append(label)
    return out


def axis_ticks(total_s: float, width: int) -> str:
    """The time axis, `width` cells: 0s at the left, the total at the right and the half-way time
    in the middle, each kept only where it fits with a cell of the axis on either side of it (the
    total first, then 0s), so labels never run together (`1.54s3.08s` at 80x24)."""
    end = units.duration(total_s * 1000)
    mid = units.duration(total_s * 500)
    line = list("┈" * width)
    taken: list[tuple[int, int]] = []
    for pos, text in ((width - len(end), end), (0, "0s"), (width // 2 - len(mid) // 2, mid)):
        start, stop = pos, pos + len(text)
        if start < 0 or stop > width or any(start <= b and a <= stop for a, b in taken):
            continue
        taken.append((start, stop))
        line[start:stop] = text
    return "".join(line)


class Timeline(Widget):
    """Bars scaled to the run's duration (or to the time so far, while it runs)."""

    COMPONENT_CLASSES = {
        "timeline--axis",
        "timeline--label",
        "timeline--running",
        "timeline--ok",
        "timeline--partial",
        "timeline--error",
        "timeline--cancelled",
        "timeline--muted",
        "timeline--selected",
    }

    @dataclass
    class Selected(Message):
        """A bar was clicked."""

        timeline: Timeline
        key: str

        @property
        def control(self) -> Timeline:
            return self.timeline

    def __init__(self, empty: str = "No steps yet.", *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.empty = empty
        self.spans: list[Span] = []
        self.labels: list[str] = []  # what each bar is called (with its loop round)
        self.total = 0.0
        self.selected: str | None = None

    def show(self, spans: Sequence[Span], total: float) -> None:
        """Draw these bars over [0, total] seconds."""
        grew = len(spans) != len(self.spans)
        self.spans = list(spans)
        self.labels = round_labels(self.spans)
        self.total = max(total, max((s.end for s in spans), default=0.0))
        self.refresh(layout=grew)

    def select(self, key: str | None) -> None:
        self.selected = key
        self.refresh()

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return len(self.spans) + 1 if self.spans else 1

    def _style(self, name: str) -> Style:
        """The component's style, its colour blended over the widget's background (a partial style
        alone turns a translucent colour such as `$text-muted` into white: the light theme's axis
        was invisible)."""
        blended = self.get_component_rich_style(name, partial=False).color
        return self.get_component_rich_style(name, partial=True) + Style(color=blended)

    def render(self) -> Text:
        if not self.spans:
            return Text(self.empty, style=self._style("timeline--muted"))
        width = max(20, self.content_size.width)
        label_w = max(10, min(26, width // 3))
        dur_w = 8
        bar_w = max(4, width - label_w - dur_w - 1)
        total = self.total or 1e-9
        out = Text(no_wrap=True, overflow="crop")
        out.append(self._axis(label_w, bar_w, dur_w), style=self._style("timeline--axis"))
        for span, name in zip(self.spans, self.labels, strict=True):
            out.append("\n")
            indent = " " * min(span.depth * INDENT, label_w // 2)
            label = (indent + units.first_line(name, label_w - 1 - len(indent))).ljust(label_w)
            label_style = self._style(
                "timeline--selected" if span.key == self.selected else "timeline--label"
            )
            out.append(label, style=label_style)
            start = min(bar_w - 1, int(span.start / total * bar_w))
            end = max(start + 1, min(bar_w, round(span.end / total * bar_w)))
            char = "█" if span.is_call else "━"
            style = self._style(status_class(span.status))
            out.append(" " * start)
            out.append(char * (end - start), style=style)
            out.append(" " * (bar_w - end))
            out.append(" " + units.duration((span.end - span.start) * 1000).rjust(dur_w - 1))
        return out

    def _axis(self, label_w: int, bar_w: int, dur_w: int) -> str:
        return "time".ljust(label_w) + axis_ticks(self.total, bar_w) + " " * (dur_w + 1)

    def on_click(self, event: events.Click) -> None:
        row = event.y - 1  # the first line is the axis
        if 0 <= row < len(self.spans):
            key = self.spans[row].key
            self.select(key)
            self.post_message(self.Selected(self, key))
