"""A mode file, syntax highlighted, with each validation error written under its line."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from rich.syntax import Syntax
from rich.text import Text
from textual.widgets import Static

from composite_cli.errors import ModeError


def annotated_yaml(source: str, errors: Sequence[ModeError], *, dark: bool, error_style: str) -> Text:
    """Line-numbered, highlighted YAML; `▲ field: message` under each line that has an error."""
    theme = "monokai" if dark else "default"
    highlighted = Syntax(source, "yaml", theme=theme, background_color="default").highlight(source)
    by_line: dict[int, list[ModeError]] = defaultdict(list)
    for err in errors:
        by_line[err.line or 0].append(err)
    lines = highlighted.split("\n", allow_blank=True)
    width = len(str(len(lines)))
    out = Text(no_wrap=True)
    for err in by_line.get(0, []):  # problems with no line: the file as a whole
        out.append(
            f"{'!':>{width}} ▲ {err.field + ': ' if err.field else ''}{err.message}\n", style=error_style
        )
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and not line.plain:
            break
        marker = "✗" if number in by_line else " "
        out.append(f"{number:>{width}}{marker}", style=error_style if number in by_line else "dim")
        out.append(" ")
        out.append_text(line)
        out.append("\n")
        for err in by_line.get(number, []):
            field = f"{err.field}: " if err.field else ""
            out.append(f"{' ' * width}  ▲ {field}{err.message}\n", style=error_style)
    out.rstrip()
    return out


class YamlView(Static):
    """Shows a mode's YAML; `show()` again after validation to put the errors in place."""

    def show(self, source: str, errors: Sequence[ModeError] = ()) -> None:
        dark = self.app.current_theme.dark
        self.update(
            annotated_yaml(source, errors, dark=dark, error_style=f"bold {self.app.theme_variables['error']}")
        )
