"""The `numeric` scorer: the answer gives the expected number, within a tolerance.

An answer that marks its answer ("the answer is X", "Answer: X", \\boxed{X}, a final "= X") is
held to the number it marks; an answer with no marker passes if any number in it matches.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

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

# Clock times and ISO dates are not quantities; they are blanked before numbers are read, so
# "65 minutes after 9:00 pm" ends in 65, not 0.
_TIMES_DATES = re.compile(
    r"(?<!\d)(?:\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?)(?!\d)", re.IGNORECASE
)
_NUMBER = re.compile(
    r"(?P<sign>(?<![\w)\]])[-\u2212])?"  # a minus that is not a hyphen or a range's dash
    r"[$€£¥]?"
    r"(?<![\w.])"  # not glued to a word ("e4", "cm2") or the middle of a number
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d{1,3}(?:[\u00a0\u2009\u202f]\d{3})+(?!\d)|\d+)"
    r"(?P<frac>\.\d+)?"
    r"(?P<exp>[eE][-+]?\d+(?![\w.]))?"
)
_NUMBER_AHEAD = r"(?=[-\u2212$€£¥]?\d)"
_STRONG_MARKERS = (
    (
        "after 'answer is'",
        re.compile(
            r"\banswer\s*(?:is|was|would\s+be|will\s+be|should\s+be|[:=])[^\n\d$€£¥]{0,40}?" + _NUMBER_AHEAD,
            re.IGNORECASE,
        ),
    ),
    ("in \\boxed{}", re.compile(r"\\boxed\{" + _NUMBER_AHEAD)),
)
_EQUALS = re.compile(r"[=≈]\s*" + _NUMBER_AHEAD)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def _parse_number(match: re.Match[str]) -> float:
    digits = re.sub(r"[,\u00a0\u2009\u202f]", "", match.group("int"))
    digits += (match.group("frac") or "") + (match.group("exp") or "")
    value = float(digits)
    return -value if match.group("sign") else value


def find_numbers(text: str) -> list[tuple[int, float]]:
    """Every number in the text as (start offset, value): "1,234" and "1\u202f234" (a narrow
    no-break space; a plain space is not a separator) -> 1234, "$23" -> 23,
    "23%" -> 23, "-3.5", "2.5e3"; clock times, ISO dates and digits inside words are skipped."""
    text = _TIMES_DATES.sub(lambda m: " " * len(m.group()), text)
    return [(m.start(), _parse_number(m)) for m in _NUMBER.finditer(text)]


def pick_number(text: str) -> tuple[float | None, str]:
    """The number the answer marks as its answer, and which marker marked it; (None, "no
    marker") if the answer marks none, (None, "no number") if it holds no number at all.

    Markers, in order:
    1. the number after the last "answer is X" / "Answer: X" (within 40 characters on the same
       line; "answer is 50 - 27 = 23." -> 23), else in the last \\boxed{X};
    2. a final "= X": in the last sentence that holds a number, the number after its last "="
       ("so the change is 50 - 27 = 23 (4 pens and 3 notebooks)" -> 23).
    An "=" earlier in the working is not a marker: "4 x 3 = 12 ... so she gets 23 back" has none.
    """
    text = text.replace("*", "")
    numbers = find_numbers(text)
    if not numbers:
        return None, "no number"

    def first_after(end: int) -> float | None:
        return next((value for start, value in numbers if start >= end), None)

    def after_marker(end: int) -> float | None:
        # "the answer is 50 - 27 = 23": the result of a calculation in the marker's sentence.
        stop = _SENTENCE_END.search(text, end)
        equals = [m.end() for m in _EQUALS.finditer(text, end, stop.start() if stop else len(text))]
        return first_after(equals[-1] if equals else end)

    for how, marker in _STRONG_MARKERS:
        picked = [v for m in marker.finditer(text) if (v := after_marker(m.end())) is not None]
        if picked:
            return picked[-1], how
    last_start = numbers[-1][0]
    sentence = max((m.end() for m in _SENTENCE_END.finditer(text, 0, last_start)), default=0)
    equals = [m.end() for m in _EQUALS.finditer(text, sentence)]
    if equals and (value := first_after(equals[-1])) is not None:
        return value, "after '='"
    return None, "no marker"


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
