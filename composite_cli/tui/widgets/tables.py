"""Filling a DataTable in one go, with column widths computed from the cells (not left to the
table's deferred auto-width, which can lag a frame behind and cut cells short). A `str` cell is
plain text, never markup: values come from trace databases and eval files (a `[/]` in a name made
the table fail); style a cell by passing a Text."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

Cell = str | Text


def _plain(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell))


def fill(
    table: DataTable[Cell],
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    keys: Sequence[str] | None = None,
) -> None:
    """Replace the table's columns and rows; each column as wide as its widest cell."""
    table.clear(columns=True)
    cells = [[_plain(cell) for cell in row] for row in rows]
    for i, header in enumerate(headers):
        width = max([len(header), *(row[i].cell_len for row in cells)])
        table.add_column(header, width=width, key=header)
    for n, row in enumerate(cells):
        table.add_row(*row, key=keys[n] if keys is not None else None)
