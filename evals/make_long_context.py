#!/usr/bin/env python3
"""Generate evals/long_context.jsonl: long synthetic documents with one question each.

Each case's `input` is

    <document>
    ... many lines ...
    </document>

    Question: ...

The documents are made up (log lines built from fixed word lists, or short paragraphs built the
same way), so the file is free of copyrighted text and every expected answer is computed here
from the generated records. Three kinds of task:

- needle: one line holds a secret code for a city's warehouse; the question asks for it.
- counting: count lines of one level, or shipments to one city.
- aggregation: a sum, a maximum, or the most frequent destination.

Usage:
    python evals/make_long_context.py              # rewrite evals/long_context.jsonl
    python evals/make_long_context.py --out PATH   # write elsewhere
    python evals/make_long_context.py --check      # verify the file on disk (or --out PATH)

The output is deterministic: each case has its own fixed seed, and running the script again
writes the same bytes. Standard library only; no network.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "long_context.jsonl"
MAX_FILE_BYTES = 12_000_000

# ---------------------------------------------------------------------------------------------
# Word lists (all invented or generic; no copyrighted text)
# ---------------------------------------------------------------------------------------------

CITIES = (
    "Lyon Porto Madrid Milan Hamburg Vienna Prague Krakow "
    "Rotterdam Antwerp Geneva Seville Dublin Oslo Tallinn Zagreb"
).split()
CARRIERS = ["NorthLine", "Bluewave", "Transalp", "Kestrel", "Ferrovia", "Orbis"]
NODES = ["app-01", "app-02", "app-03", "db-01", "db-02", "cache-01", "queue-01"]
USERS = (
    "amartin bkowalski cferreira dnovak ehansen fmoreau gschmidt hlindqvist "
    "irossi jdubois kwagner lsilva mpetrov nhorvat okeane pvermeer"
).split()
DECLINE_REASONS = ["card expired", "insufficient funds", "address mismatch", "bank timeout"]

ADJECTIVES = (
    "quiet narrow busy old green bright distant steady wide careful "
    "late early small crowded empty patient modest tidy windy grey"
).split()
NOUNS = [
    "courier",
    "clerk",
    "truck",
    "forklift",
    "dock",
    "ledger",
    "pallet",
    "manager",
    "driver",
    "schedule",
    "corridor",
    "loading bay",
    "inspector",
    "crate",
    "timetable",
    "depot",
    "shift",
    "container",
    "route",
    "supervisor",
]
VERBS = (
    "checked moved delayed counted cleaned repaired inspected labelled "
    "stacked reviewed loaded unloaded signed weighed sorted painted"
).split()
ADVERBS = [
    "slowly",
    "quickly",
    "twice",
    "again",
    "carefully",
    "late",
    "early",
    "quietly",
    "at noon",
    "before dawn",
    "after lunch",
    "without comment",
]
OPENERS = [
    "On Monday",
    "On Tuesday",
    "Later that week",
    "In the morning",
    "By the evening",
    "Meanwhile",
    "Afterwards",
    "Around midday",
    "As usual",
    "That afternoon",
    "During the night shift",
]

# ---------------------------------------------------------------------------------------------
# Sizes and difficulty
# ---------------------------------------------------------------------------------------------

SIZES = {
    "2k": 2_000,
    "20k": 20_000,
    "50k": 50_000,
    "100k": 100_000,
    "200k": 200_000,
    "500k": 500_000,
    "1M": 1_000_000,
    "2M": 2_000_000,
}


def difficulty_for(target: int) -> str:
    """easy below 50k characters, medium from 50k to 200k, hard from 500k."""
    if target < 50_000:
        return "easy"
    if target <= 200_000:
        return "medium"
    return "hard"


DOC_OPEN = "<document>\n"
DOC_CLOSE = "</document>\n\nQuestion: "

# ---------------------------------------------------------------------------------------------
# Log haystack
# ---------------------------------------------------------------------------------------------


class LogWriter:
    """Produces log lines one at a time and keeps the counts the questions need."""

    # event kind -> relative weight
    EVENTS = [
        ("shipped", 24),
        ("delivered", 12),
        ("payment", 14),
        ("refund", 6),
        ("declined", 4),
        ("received", 8),
        ("inventory", 7),
        ("delayed", 5),
        ("timeout", 3),
        ("login", 10),
        ("cache", 7),
    ]

    def __init__(self, rng: random.Random, dest_weights: dict[str, float] | None = None):
        self.rng = rng
        self.time = datetime(2024, 1, 8, 6, 0, 0) + timedelta(
            days=rng.randrange(0, 300), seconds=rng.randrange(0, 86400)
        )
        self.order = rng.randrange(10_000, 60_000)
        self.kinds = [k for k, _ in self.EVENTS]
        self.kind_weights = [w for _, w in self.EVENTS]
        self.dest_cities = list(CITIES)
        self._pending: list[tuple] = []
        self.dest_w = [(dest_weights or {}).get(c, 1.0) for c in self.dest_cities]
        # bookkeeping for the expected answers
        self.levels: Counter[str] = Counter()
        self.shipped_to: Counter[str] = Counter()
        self.refund_total = 0
        self.payments: list[int] = []
        self.received_at: Counter[str] = Counter()

    def _ts(self) -> str:
        self.time += timedelta(seconds=self.rng.randint(1, 45))
        return self.time.strftime("%Y-%m-%d %H:%M:%S")

    def _order(self) -> int:
        self.order += self.rng.randint(1, 9)
        return self.order

    def _other_city(self, not_this: str) -> str:
        while True:
            c = self.rng.choice(CITIES)
            if c != not_this:
                return c

    def line(self) -> str:
        """One log line (no trailing newline). Its facts wait in `_pending` until `keep()`."""
        rng = self.rng
        self._pending = []
        kind = rng.choices(self.kinds, self.kind_weights)[0]
        ts = self._ts()
        if kind == "shipped":
            dst = rng.choices(self.dest_cities, self.dest_w)[0]
            src = self._other_city(dst)
            level, msg = "INFO", f"order {self._order()} shipped from {src} to {dst}"
            self._pending.append(("shipped_to", dst))
        elif kind == "delivered":
            level, msg = "INFO", f"order {self._order()} delivered to customer in {rng.choice(CITIES)}"
        elif kind == "payment":
            amount = rng.randint(10, 2500)
            level, msg = "INFO", f"payment received for order {self._order()}: {amount} EUR"
            self._pending.append(("payment", amount))
        elif kind == "refund":
            amount = rng.randint(5, 480)
            level, msg = "WARN", f"refund issued for order {self._order()}: {amount} EUR"
            self._pending.append(("refund", amount))
        elif kind == "declined":
            level = "ERROR"
            msg = f"payment declined for order {self._order()}: {rng.choice(DECLINE_REASONS)}"
        elif kind == "received":
            units, city = rng.randint(1, 400), rng.choice(CITIES)
            level, msg = "INFO", f"received {units} units at {city} warehouse"
            self._pending.append(("received_at", city, units))
        elif kind == "inventory":
            level = "DEBUG" if rng.random() < 0.5 else "INFO"
            msg = f"inventory check at {rng.choice(CITIES)} warehouse: {rng.randint(50, 9000)} items on hand"
        elif kind == "delayed":
            level = "WARN"
            msg = (
                f"shipment of order {self._order()} from {rng.choice(CITIES)} delayed, "
                f"new ETA in {rng.randint(1, 6)} days"
            )
        elif kind == "timeout":
            level = "ERROR"
            msg = f"timeout contacting carrier {rng.choice(CARRIERS)} for order {self._order()}"
        elif kind == "login":
            level = "INFO"
            msg = f"user {rng.choice(USERS)} logged in from {rng.choice(CITIES)}"
        else:  # cache
            level = "DEBUG" if rng.random() < 0.8 else "ERROR"
            if level == "ERROR":
                msg = f"cache refresh failed on node {rng.choice(NODES)} after {rng.randint(200, 9000)} ms"
            else:
                msg = f"cache refresh took {rng.randint(2, 900)} ms on node {rng.choice(NODES)}"
        self._pending.append(("level", level))
        return f"{ts} {level} {msg}"

    def keep(self) -> None:
        """Count the facts of the line last returned by `line()`: it made it into the document."""
        for fact in self._pending:
            if fact[0] == "level":
                self.levels[fact[1]] += 1
            elif fact[0] == "shipped_to":
                self.shipped_to[fact[1]] += 1
            elif fact[0] == "payment":
                self.payments.append(fact[1])
            elif fact[0] == "refund":
                self.refund_total += fact[1]
            elif fact[0] == "received_at":
                self.received_at[fact[1]] += fact[2]
        self._pending = []


# ---------------------------------------------------------------------------------------------
# Prose haystack
# ---------------------------------------------------------------------------------------------


def prose_sentence(rng: random.Random) -> str:
    form = rng.randrange(4)
    a1, a2 = rng.choice(ADJECTIVES), rng.choice(ADJECTIVES)
    n1, n2 = rng.choice(NOUNS), rng.choice(NOUNS)
    v, adv, city = rng.choice(VERBS), rng.choice(ADVERBS), rng.choice(CITIES)
    if form == 0:
        return f"{rng.choice(OPENERS)}, the {a1} {n1} in {city} {v} the {a2} {n2} {adv}."
    if form == 1:
        return f"The {n1} {v} {rng.randint(2, 90)} {n2}s {adv} at the {city} depot."
    if form == 2:
        return f"A {a1} {n1} from {city} was {v} {adv}, and the {n2} stayed {a2}."
    return f"Nobody in {city} expected the {a1} {n1} to be {v} {adv}."


def prose_paragraph(rng: random.Random) -> str:
    return " ".join(prose_sentence(rng) for _ in range(rng.randint(2, 5)))


# ---------------------------------------------------------------------------------------------
# Document assembly
# ---------------------------------------------------------------------------------------------


def assemble(units: list[str], sep: str, question: str) -> str:
    return DOC_OPEN + sep.join(units) + "\n" + DOC_CLOSE + question


def fill(make_unit, sep: str, question: str, target: int, reserve: int = 0, on_keep=None) -> list[str]:
    """Units from make_unit() until the assembled input would pass `target` characters.

    `reserve` characters are kept free (for a needle inserted afterwards). `on_keep()` is called
    after each unit that is kept; the last unit made, which did not fit, is dropped uncounted.
    """
    budget = target - len(DOC_OPEN) - len("\n") - len(DOC_CLOSE) - len(question) - reserve
    units: list[str] = []
    used = 0
    while True:
        u = make_unit()
        extra = len(u) + (len(sep) if units else 0)
        if used + extra > budget:
            return units
        units.append(u)
        used += extra
        if on_keep:
            on_keep()


# ---------------------------------------------------------------------------------------------
# Case builders. Each returns (input, expected, scorer options, extra metadata).
# ---------------------------------------------------------------------------------------------


def make_code(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I / O
    return f"{rng.choice(letters)}{rng.choice(letters)}-{rng.randint(1000, 9999)}"


def build_needle(rng: random.Random, target: int, haystack: str) -> tuple:
    city = rng.choice(CITIES)
    code = make_code(rng)
    question = f"What is the secret code mentioned for the warehouse in {city}? Answer with the code only."
    if haystack == "logs":
        writer = LogWriter(rng)
        needle_msg = f"INFO memo from operations: the secret code for the {city} warehouse is {code}."
        reserve = len("2024-01-01 00:00:00 ") + len(needle_msg) + 1
        units = fill(writer.line, "\n", question, target, reserve, writer.keep)
        pos = rng.randrange(1, len(units))
        # the needle takes the timestamp of the line before it, so the log stays in order
        needle = units[pos - 1][:19] + " " + needle_msg
        units.insert(pos, needle)
        sep = "\n"
    else:
        needle = (
            f"One note was pinned above the door: the secret code for the {city} warehouse "
            f"is {code}. Nobody was to repeat it."
        )
        units = fill(lambda: prose_paragraph(rng), "\n\n", question, target, len(needle) + 2)
        pos = rng.randrange(1, len(units))
        units.insert(pos, needle)
        sep = "\n\n"
    text = assemble(units, sep, question)
    depth = round(pos / len(units), 3)
    return text, [code], {}, {"haystack": haystack, "needle_depth": depth}


def build_count_level(rng: random.Random, target: int, level: str) -> tuple:
    question = f"How many log lines have level {level}? Answer with a number only."
    writer = LogWriter(rng)
    units = fill(writer.line, "\n", question, target, on_keep=writer.keep)
    return assemble(units, "\n", question), writer.levels[level], {}, {"haystack": "logs"}


def build_count_shipped(rng: random.Random, target: int) -> tuple:
    city = rng.choice(CITIES)
    question = (
        f"How many orders were shipped to {city}? Count the lines "
        f"'order <number> shipped from <city> to {city}'. Answer with a number only."
    )
    writer = LogWriter(rng)
    units = fill(writer.line, "\n", question, target, on_keep=writer.keep)
    return assemble(units, "\n", question), writer.shipped_to[city], {}, {"haystack": "logs"}


def build_sum_refunds(rng: random.Random, target: int) -> tuple:
    question = (
        "What is the total amount, in EUR, of all refunds issued "
        "(lines 'refund issued for order <number>: <amount> EUR')? Answer with a number only."
    )
    writer = LogWriter(rng)
    units = fill(writer.line, "\n", question, target, on_keep=writer.keep)
    return assemble(units, "\n", question), writer.refund_total, {}, {"haystack": "logs"}


def build_sum_received(rng: random.Random, target: int) -> tuple:
    city = rng.choice(CITIES)
    question = (
        f"How many units in total were received at the {city} warehouse "
        f"(lines 'received <n> units at {city} warehouse')? Answer with a number only."
    )
    writer = LogWriter(rng)
    units = fill(writer.line, "\n", question, target, on_keep=writer.keep)
    return assemble(units, "\n", question), writer.received_at[city], {}, {"haystack": "logs"}


def build_max_payment(rng: random.Random, target: int) -> tuple:
    question = (
        "What is the largest single payment received, in EUR "
        "(lines 'payment received for order <number>: <amount> EUR')? Answer with a number only."
    )
    for _ in range(100):
        writer = LogWriter(rng)
        units = fill(writer.line, "\n", question, target, on_keep=writer.keep)
        top = max(writer.payments)
        if writer.payments.count(top) == 1:
            return assemble(units, "\n", question), top, {}, {"haystack": "logs"}
    raise RuntimeError("no unique maximum payment")


def build_top_destination(rng: random.Random, target: int) -> tuple:
    question = (
        "Which city appears most often as the destination of a shipped order "
        "(the city after 'to' in lines 'order <number> shipped from <city> to <city>')? "
        "Answer with the city name only."
    )
    favoured = rng.choice(CITIES)
    for _ in range(100):
        writer = LogWriter(rng, dest_weights={favoured: 1.5})
        units = fill(writer.line, "\n", question, target, on_keep=writer.keep)
        (first, n1), (_, n2) = writer.shipped_to.most_common(2)
        if n1 - n2 >= 2:  # a clear winner, decided by the data rather than by `favoured`
            return assemble(units, "\n", question), [first], {}, {"haystack": "logs"}
    raise RuntimeError("no clear most frequent destination")


# (id, kind, size label, seed, builder)
SPECS = [
    ("lc-needle-01", "needle", "2k", 101, lambda r, t: build_needle(r, t, "logs")),
    ("lc-needle-02", "needle", "20k", 102, lambda r, t: build_needle(r, t, "prose")),
    ("lc-needle-03", "needle", "100k", 103, lambda r, t: build_needle(r, t, "logs")),
    ("lc-needle-04", "needle", "500k", 104, lambda r, t: build_needle(r, t, "prose")),
    ("lc-needle-05", "needle", "1M", 105, lambda r, t: build_needle(r, t, "logs")),
    ("lc-needle-06", "needle", "2M", 106, lambda r, t: build_needle(r, t, "logs")),
    ("lc-count-01", "counting", "2k", 201, lambda r, t: build_count_level(r, t, "INFO")),
    ("lc-count-02", "counting", "20k", 202, build_count_shipped),
    ("lc-count-03", "counting", "50k", 203, lambda r, t: build_count_level(r, t, "ERROR")),
    ("lc-count-04", "counting", "200k", 204, build_count_shipped),
    ("lc-count-05", "counting", "1M", 205, lambda r, t: build_count_level(r, t, "WARN")),
    ("lc-count-06", "counting", "2M", 206, build_count_shipped),
    ("lc-agg-01", "aggregation", "2k", 301, build_sum_refunds),
    ("lc-agg-02", "aggregation", "50k", 302, build_top_destination),
    ("lc-agg-03", "aggregation", "100k", 303, build_max_payment),
    ("lc-agg-04", "aggregation", "200k", 304, build_sum_received),
    ("lc-agg-05", "aggregation", "500k", 305, build_top_destination),
    ("lc-agg-06", "aggregation", "2M", 306, build_sum_refunds),
]


def generate() -> list[dict]:
    cases = []
    for case_id, kind, size, seed, builder in SPECS:
        target = SIZES[size]
        rng = random.Random(seed)
        text, expected, options, extra = builder(rng, target)
        scorer = "numeric" if isinstance(expected, int) else "contains"
        case = {"id": case_id, "input": text, "expected": expected, "scorer": scorer, **options}
        case["metadata"] = {
            "tags": ["long-context", kind],
            "difficulty": difficulty_for(target),
            "chars": len(text),
            "size": size,
            **extra,
        }
        cases.append(case)
    return cases


def serialize(cases: list[dict]) -> bytes:
    return "".join(json.dumps(c) + "\n" for c in cases).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# --check: an independent recomputation over the final text
# ---------------------------------------------------------------------------------------------

LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (DEBUG|INFO|WARN|ERROR) .+$")


def solve(question: str, doc: str):
    """Answer a question from the document text alone, by regex."""
    if m := re.match(r"What is the secret code mentioned for the warehouse in (\w+)\?", question):
        hits = re.findall(r"secret code for the (\w+) warehouse is ([A-Z]{2}-\d{4})", doc)
        assert len(hits) == 1 and hits[0][0] == m[1], hits
        assert len(re.findall(r"\b[A-Z]{2}-\d{4}\b", doc)) == 1, "code-like string elsewhere"
        assert doc.lower().count("secret") == 1
        return [hits[0][1]]
    if m := re.match(r"How many log lines have level (\w+)\?", question):
        return sum(1 for line in doc.splitlines() if line.split(" ")[2:3] == [m[1]])
    if m := re.match(r"How many orders were shipped to (\w+)\?", question):
        return len(re.findall(rf"^\S+ \S+ \w+ order \d+ shipped from \w+ to {m[1]}$", doc, re.M))
    if question.startswith("What is the total amount, in EUR, of all refunds"):
        return sum(int(a) for a in re.findall(r"refund issued for order \d+: (\d+) EUR$", doc, re.M))
    if m := re.match(r"How many units in total were received at the (\w+) warehouse", question):
        return sum(int(a) for a in re.findall(rf"received (\d+) units at {m[1]} warehouse$", doc, re.M))
    if question.startswith("What is the largest single payment"):
        amounts = [int(a) for a in re.findall(r"payment received for order \d+: (\d+) EUR$", doc, re.M)]
        assert sorted(amounts)[-1] != sorted(amounts)[-2], "tie for the largest payment"
        return max(amounts)
    if question.startswith("Which city appears most often as the destination"):
        counts = Counter(re.findall(r" shipped from \w+ to (\w+)$", doc, re.M))
        (first, n1), (_, n2) = counts.most_common(2)
        assert n1 > n2
        return [first]
    raise AssertionError(f"no solver for question: {question!r}")


def check(path: Path) -> int:
    errors: list[str] = []
    on_disk = path.read_bytes()
    cases = generate()
    fresh = serialize(cases)
    if on_disk != fresh:
        errors.append(f"{path} differs from a fresh generation (run the script to rewrite it)")
    if len(on_disk) > MAX_FILE_BYTES:
        errors.append(f"{path} is {len(on_disk)} bytes, over {MAX_FILE_BYTES}")
    ids = set()
    for line_no, raw in enumerate(on_disk.decode("utf-8").splitlines(), 1):
        case = json.loads(raw)
        cid = case["id"]
        if cid in ids:
            errors.append(f"duplicate id {cid}")
        ids.add(cid)
        text = case["input"]
        meta = case["metadata"]
        try:
            assert text.isascii()
            assert meta["chars"] == len(text), "metadata.chars"
            assert meta["difficulty"] == difficulty_for(SIZES[meta["size"]])
            assert SIZES[meta["size"]] - 500 < len(text) <= SIZES[meta["size"]], "size"
            kinds = ("needle", "counting", "aggregation")
            assert meta["tags"][0] == "long-context" and meta["tags"][1] in kinds, "tags"
            m = re.fullmatch(r"<document>\n(.*)\n</document>\n\nQuestion: ([^\n]+)", text, re.S)
            assert m, "layout"
            doc, question = m[1], m[2]
            if meta["haystack"] == "logs":
                bad = [ln for ln in doc.splitlines() if not LOG_LINE.match(ln)]
                assert not bad, f"irregular log line {bad[:1]}"
            got = solve(question, doc)
            assert got == case["expected"], f"expected {case['expected']!r}, recomputed {got!r}"
            if case["scorer"] == "numeric":
                assert isinstance(case["expected"], int) and case["expected"] > 0
            else:
                assert case["scorer"] == "contains"
                assert all(e.lower() not in question.lower() for e in case["expected"]), "answer in question"
        except AssertionError as exc:
            errors.append(f"line {line_no} ({cid}): {exc}")
    for error in errors:
        print("FAIL", error)
    if not errors:
        print(f"OK {path}: {len(ids)} cases, {len(on_disk)} bytes, every expected answer recomputed")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default {DEFAULT_OUT})")
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate in memory, compare with the file, recompute every answer",
    )
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    data = serialize(generate())
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {len(data.splitlines())} cases, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
