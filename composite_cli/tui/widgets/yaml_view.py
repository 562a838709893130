"""A mode file, syntax highlighted, with each validation error written under its line. Long lines
wrap to the pane's width under their own line number (the gutter stays clear), and the text takes
the theme's background (the highlighter's own backgrounds are dropped: in a light theme they showed
as patches behind each line)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from rich.console import Console
from rich.style import Style
from rich.syntax import Syntax
from rich.text import Span, Text
from textual.widgets import Static

from composite_cli.errors import ModeError

MIN_WRAP = 20  # narrower than this, lines are not wrapped (the pane scrolls instead)


def _no_background(text: Text) -> Text:
    """`text` with every background colour removed (foreground, bold, italic... kept)."""

    def plain(style: str | Style) -> Style:
        parsed = Style.parse(style) if isinstance(style, str) else style
        return Style(
            color=parsed.color,
            bold=parsed.bold,
            italic=parsed.italic,
            underline=parsed.underline,
            dim=parsed.dim,
        )

    out = Text(text.plain, style=plain(text.style), no_wrap=True)
    out.spans = [Span(s.start, s.end, plain(s.style)) for s in text.spans]
    return out


def _wrapped(line: Text, width: int | None) -> list[Text]:
    """`line` cut into pieces of at most `width` cells, at spaces where it can (None: one piece)."""
    if width is None or width < MIN_WRAP or line.cell_len <= width:
        return [line]
    console = Console(width=width, color_system=None, legacy_windows=False)
    return list(line.wrap(console, width, overflow="fold", no_wrap=False)) or [line]


def annotated_yaml(
    source: str, errors: Sequence[ModeError], *, dark: bool, error_style: str, width: int | None = None
) -> Text:
    """Line-numbered, highlighted YAML; `▲ field: message` under each line that has an error.
    With `width`, each line wraps to it, its continuation indented past the line numbers."""
    theme = "monokai" if dark else "default"
    highlighted = _no_background(Syntax(source, "yaml", theme=theme).highlight(source))
    by_line: dict[int, list[ModeError]] = defaultdict(list)
    for err in errors:
        by_line[err.line or 0].append(err)
    lines = highlighted.split("\n", allow_blank=True)
    gutter = len(str(len(lines)))
    room = None if width is None else width - gutter - 2
    out = Text(no_wrap=True)

    def problem(prefix: str, err: ModeError) -> None:
        message = Text(f"▲ {err.field + ': ' if err.field else ''}{err.message}")
        for piece in _wrapped(message, room):
            out.append(f"{prefix:>{gutter}}  ", style=error_style)
            out.append(piece.plain + "\n", style=error_style)
            prefix = ""

    for err in by_line.get(0, []):  # problems with no line: the file as a whole
        problem("!", err)
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and not line.plain:
            break
        marker = "✗" if number in by_line else " "
        for index, piece in enumerate(_wrapped(line, room)):
            if index == 0:
                out.append(f"{number:>{gutter}}{marker}", style=error_style if number in by_line else "dim")
            else:
                out.append(" " * (gutter + 1))
            out.append(" ")
            out.append_text(piece)
            out.append("\n")
        for err in by_line.get(number, []):
            problem("", err)
    out.rstrip()
    return out


class YamlView(Static):
    """Shows a mode's YAML; `show()` again after validation to put the errors in place. Wraps to
    the width of the pane it sits in (its parent), and again when that width changes (`rewrap`)."""

    _shown: tuple[str, tuple[ModeError, ...]] | None = None  # what show() was given last
    _width: int | None = None  # the width it was wrapped to

    def _pane_width(self) -> int | None:
        """The pane's width less room for its vertical scrollbar, shown or not (the same width
        before and after the scrollbar appears, so the text is not wrapped to a stale width)."""
        parent = self.parent
        region = getattr(parent, "content_region", None)
        if parent is None or region is None or region.width <= 0:
            return None
        return int(region.width) - int(parent.styles.scrollbar_size_vertical)

    def show(self, source: str, errors: Sequence[ModeError] = ()) -> None:
        self._shown = (source, tuple(errors))
        self._draw()

    def _draw(self) -> None:
        if self._shown is None:
            return
        source, errors = self._shown
        self._width = self._pane_width()
        dark = self.app.current_theme.dark
        error_style = f"bold {self.app.theme_variables['error']}"
        self.update(annotated_yaml(source, errors, dark=dark, error_style=error_style, width=self._width))

    def rewrap(self) -> None:
        """Wrap again if the pane's width changed (call after a resize)."""
        if self._pane_width() != self._width:
            self._draw()
