"""evals/word_problems.jsonl: every expected answer recomputed from the question's own words, by
rules written independently of the generator (a template whose text and formula disagree fails
here), with exact fractions: every answer is a whole number."""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parent.parent / "evals" / "word_problems.jsonl"
CASES = [json.loads(line) for line in PATH.read_text(encoding="utf-8").splitlines()]
F = Fraction


def solve(question: str) -> Fraction:
    nums = [F(n) for n in re.findall(r"\d+", question)]
    if "notebooks cost" in question:
        pen, book, pens, books, bill = nums
        return bill - pen * pens - book * books
    if "parts per hour" in question:
        rate, hours, days, bad = nums
        return (rate * hours - bad) * days
    if "stickers" in question:
        total, given, friends, siblings = nums
        return (total - given * friends) / siblings
    if "km per hour" in question:
        v1, t1, v2, minutes = nums
        return v1 * t1 + v2 * minutes / 60
    if "times as old as" in question:
        times, later, total = nums
        younger = (total - 2 * later) / (times + 1)
        return times * younger
    if "% off" in question:
        price, percent, count, *fee = nums
        return price * (100 - percent) / 100 * count + sum(fee)
    raise AssertionError(f"no rule for: {question}")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_every_answer_follows_from_its_question(case):
    answer = solve(case["input"])
    assert answer.denominator == 1 and answer > 0, case["input"]
    assert case["expected"] == int(answer) and case["scorer"] == "numeric"


def test_the_set_is_six_kinds_of_ten_with_unique_ids_and_questions():
    assert len(CASES) == 60
    assert len({c["id"] for c in CASES}) == 60 and len({c["input"] for c in CASES}) == 60
    kinds = Counter(c["metadata"]["tags"][1] for c in CASES)
    assert set(kinds.values()) == {10} and len(kinds) == 6
