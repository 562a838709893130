"""The `numeric` scorer: the answer gives the expected number, within a tolerance.

An answer that marks its answer ("the answer is X", "Answer: X", \\boxed{X}, a final "= X") is
held to the number it marks; an answer with no marker passes if any number in it matches. The
reading (`find_numbers`, `pick_number`) is composite_cli/answers.py's, shared with `vote`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from composite_cli.answers import find_numbers, pick_number
from composite_cli.evals.scorers.base import (
    EPS,
    JudgeFn,
    Score,
    Scorer,
    answer_text,
    is_number,
    pass_fail,
    show_number,
)

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase

__all__ = ["NumericScorer", "find_numbers", "pick_number"]

_UNMARKED = "any number, no marker"
_LISTED = 8  # numbers named in a failing explanation; long answers can hold hundreds


def _listing(values: list[float]) -> str:
    distinct = list(dict.fromkeys(values))
    shown = ", ".join(show_number(v) for v in distinct[:_LISTED])
    more = len(distinct) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


class NumericScorer(Scorer):
    """`expected` is a number; the answer passes if it gives that number within tolerance.

    If the answer marks its answer (see `pick_number`: "the answer is X", "Answer: X",
    \\boxed{X}, or a final "= X" in its last sentence), only the marked number counts, so "23 at
    first, but the answer is 24" fails for 23. Otherwise any number in the answer may match, so
    "215 minutes (3 h 35 min)" passes for 215. The price of "anywhere": an unmarked answer that
    lists several numbers passes if one of them is right; a prompt that asks for "Answer: N" gets
    the strict reading.

    Passes when |got - expected| <= max(tolerance, relative_tolerance * |expected|); `tolerance`
    (absolute) defaults to 1e-6, `relative_tolerance` to 0. Number words ("twenty") and decimal
    commas ("3,5") are not read.
    """

    name = "numeric"
    options = frozenset({"tolerance", "relative_tolerance"})

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        if not is_number(expected) or not math.isfinite(expected):
            return f"expected must be a number, got {expected!r}"
        for key in ("tolerance", "relative_tolerance"):
            value = options.get(key, 0)
            if not is_number(value) or not math.isfinite(value) or value < 0:
                return f"{key} must be a non-negative number, got {value!r}"
        return None

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        want = float(case.expected)
        expected = f"expected {show_number(want)}"
        tolerance = max(
            float(case.options.get("tolerance", 1e-6)),
            float(case.options.get("relative_tolerance", 0)) * abs(want),
        )

        def close(got: float) -> bool:
            return abs(got - want) <= tolerance + EPS * max(1.0, abs(want))

        text = answer_text(message)
        marked, how = pick_number(text)
        if marked is not None:
            return pass_fail(close(marked), f"found {show_number(marked)} ({how}), {expected}")
        # `*` is kept here, unlike in pick_number: "3*4" is two numbers, and "**23**" reads fine.
        numbers = [value for _, value in find_numbers(text)]
        if not numbers:
            return Score(0.0, f"no number in the answer, {expected}")
        hits = [value for value in numbers if close(value)]
        if hits:
            best = min(hits, key=lambda value: abs(value - want))
            return Score(1.0, f"found {show_number(best)} ({_UNMARKED}), {expected}")
        return Score(0.0, f"found {_listing(numbers)} ({_UNMARKED}), {expected}")
