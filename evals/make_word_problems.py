#!/usr/bin/env python3
"""Generate evals/word_problems.jsonl: arithmetic word problems whose answers are exact integers.

The control set for self-consistency (`vote-v1`): multi-step problems where a model that gets a
step wrong now and then gives *different* wrong numbers on different samples, while its right
answer is always the same number, so a majority over samples should score higher than one sample
(Wang et al. 2022: +17.9 points on GSM8K). Expected direction: vote-v1 >= direct on the same
model; a set where the vote does not help points at a model that is consistently wrong, not at
the vote.

Each problem comes from a template whose numbers are drawn with a per-case seed, and its answer
is computed here from those numbers with integer arithmetic (numbers are drawn so that every
division is exact), so the expected values are right by construction. Six kinds, ten cases each:
change (shopping), production (rates), sharing (division), distance (two legs), ages, discount
(percentages).

Usage:
    python evals/make_word_problems.py              # rewrite evals/word_problems.jsonl
    python evals/make_word_problems.py --out PATH   # write elsewhere
    python evals/make_word_problems.py --check      # verify the file on disk (or --out PATH)

Deterministic: running it again writes the same bytes. Standard library only; no network.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "word_problems.jsonl"
PER_KIND = 10
NAMES = "Maya Sam Lena Omar Priya Tom Ines Kofi Hana Luca Zoe Ravi".split()
ASK = " Give the answer as a number."

Problem = tuple[str, int, str]  # question, answer, difficulty


def change(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    pen, book = rng.randint(2, 6), rng.randint(4, 12)
    pens, books = rng.randint(2, 9), rng.randint(2, 6)
    total = pen * pens + book * books
    bill = next(b for b in (20, 50, 100, 200) if b > total)
    question = (
        f"Pens cost ${pen} each and notebooks cost ${book} each. {name} buys {pens} pens and "
        f"{books} notebooks and pays with a ${bill} bill. How much change, in dollars, does "
        f"{name} get back?"
    )
    return question, bill - total, "easy"


def production(rng: random.Random) -> Problem:
    per_hour, hours, days = rng.randint(12, 60), rng.randint(5, 9), rng.randint(3, 6)
    bad_per_day = rng.randint(2, 9)
    question = (
        f"A machine makes {per_hour} parts per hour. It runs {hours} hours a day for {days} days, "
        f"and each day {bad_per_day} of its parts are rejected as faulty. How many good parts "
        "does it make in those days?"
    )
    return question, (per_hour * hours - bad_per_day) * days, "medium"


def sharing(rng: random.Random) -> Problem:
    friends = rng.randint(3, 6)
    siblings, per_sibling = rng.randint(2, 4), rng.randint(5, 20)
    given = rng.randint(2, 6)
    total = friends * given + siblings * per_sibling
    name = rng.choice(NAMES)
    question = (
        f"{name} has {total} stickers. {name} gives {given} stickers to each of {friends} "
        f"friends, then shares the rest equally among {siblings} siblings. How many stickers "
        "does each sibling get?"
    )
    return question, per_sibling, "easy"


def distance(rng: random.Random) -> Problem:
    v1, t1 = rng.choice([40, 50, 60, 70, 80, 90]), rng.randint(2, 5)
    v2, minutes = rng.choice([30, 60, 90, 120]), rng.choice([20, 40, 60, 80, 100, 120])
    second = v2 * minutes // 60  # exact: every speed here is a multiple of 30, every time of 20
    question = (
        f"A train travels at {v1} km per hour for {t1} hours, then at {v2} km per hour for "
        f"{minutes} minutes. How many kilometres does it travel in all?"
    )
    return question, v1 * t1 + second, "medium"


def ages(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    young, times, later = rng.randint(4, 14), rng.randint(2, 4), rng.randint(3, 10)
    old = young * times
    total = old + later + young + later
    question = (
        f"{a} is {times} times as old as {b}. In {later} years, their ages will add up to "
        f"{total}. How old is {a} now?"
    )
    return question, old, "hard"


def discount(rng: random.Random) -> Problem:
    percent = rng.choice([10, 20, 25, 50])
    price = rng.randint(2, 12) * 20  # a multiple of 20: every discount here is whole dollars
    count, fee = rng.randint(2, 5), rng.choice([0, 5, 8, 10])
    each = price * (100 - percent) // 100
    shipping = f" plus a ${fee} delivery fee" if fee else ""
    question = (
        f"A jacket costs ${price}. During a sale it is {percent}% off. How much, in dollars, do "
        f"{count} jackets cost at the sale price{shipping}?"
    )
    return question, each * count + fee, "medium"


KINDS: dict[str, Callable[[random.Random], Problem]] = {
    "change": change,
    "production": production,
    "sharing": sharing,
    "distance": distance,
    "ages": ages,
    "discount": discount,
}


def generate() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    seen: set[str] = set()
    for k, (kind, make) in enumerate(KINDS.items()):
        for i in range(PER_KIND):
            rng = random.Random(1000 * (k + 1) + i)  # one fixed seed per case
            question, answer, difficulty = make(rng)
            while question + ASK in seen:  # a repeated question would count twice: draw again
                question, answer, difficulty = make(rng)
            seen.add(question + ASK)
            cases.append(
                {
                    "id": f"wp-{len(cases) + 1:03d}",
                    "input": question + ASK,
                    "expected": answer,
                    "scorer": "numeric",
                    "metadata": {"tags": ["word-problem", kind], "difficulty": difficulty},
                }
            )
    return cases


def serialize(cases: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases).encode("utf-8")


def check(path: Path) -> int:
    """The file equals a fresh generation, and every answer is a positive integer."""
    fresh = serialize(generate())
    if not path.exists():
        print(f"{path}: missing; run python evals/make_word_problems.py", file=sys.stderr)
        return 1
    if path.read_bytes() != fresh:
        print(
            f"{path}: differs from a fresh generation; run python evals/make_word_problems.py",
            file=sys.stderr,
        )
        return 1
    cases = generate()
    bad = [c["id"] for c in cases if not (isinstance(c["expected"], int) and c["expected"] > 0)]
    if len({c["input"] for c in cases}) != len(cases):
        bad.append("(a repeated question)")
    if bad:
        print(f"{path}: cases without a positive integer answer: {', '.join(map(str, bad))}", file=sys.stderr)
        return 1
    print(f"{path}: ok, {len(fresh.splitlines())} cases")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="regenerate in memory and compare with the file")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    data = serialize(generate())
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {len(data.splitlines())} cases, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
