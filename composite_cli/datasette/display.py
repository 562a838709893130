"""How trace values read on a page: costs rounded, error messages without repeated prefixes.

Display only: the database keeps the exact values (and the .json export shows them)."""

from __future__ import annotations

import re
from decimal import Decimal

COST_DIGITS = 6  # significant digits of a cost on a page

# `InternalServerError: litellm.InternalServerError: InternalServerError: boom`: LiteLLM prefixes
# its message with `litellm.<Name>: `, the provider's own text often starts with `<Name>: `, and
# composite names the exception type once more.
_REPEATED_PREFIX = re.compile(r"\b([A-Za-z_]\w*): (?:(?:litellm\.)?\1: )+")


def format_cost(value: float) -> str:
    """A cost in dollars for people: below $1, 6 significant digits, never in exponent notation
    (`0.0005399999999999999` -> `0.00054`, `3.705e-05` -> `0.00003705`); from $1, 4 decimals."""
    if value == 0:
        return "0"
    if abs(value) >= 1:  # dollars and cents, and a little more
        text = f"{value:.4f}"
    else:
        text = f"{Decimal(f'{value:.{COST_DIGITS}g}'):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def plain_error(text: str) -> str:
    """An error message with each exception name said once
    (`InternalServerError: litellm.InternalServerError: InternalServerError: boom` ->
    `InternalServerError: boom`), also inside a message that quotes another error."""
    return _REPEATED_PREFIX.sub(r"\1: ", text)
