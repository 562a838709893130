"""Filling a DataTable in one go, with column widths computed from the cells (not left to the
table's deferred auto-width, which can lag a frame behind and cut cells short)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

Cell = str | Text


def _width(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text.from_markup(cell).cell_len


def fill(
    table: DataTable[Cell],
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    keys: Sequence[str] | None = None,
) -> None:
    """Replace the table's columns and rows; each column as wide as its widest cell."""
    table.clear(columns=True)
    for i, header in enumerate(headers):
        width = max([len(header), *(_width(row[i]) for row in rows)])
        table.add_column(header, width=width, key=header)
    for n, row in enumerate(rows):
        table.add_row(*row, key=keys[n] if keys is not None else None)
