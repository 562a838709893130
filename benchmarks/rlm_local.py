"""rlm-v1 on the embedded model: a fact stated once in a 30-60 kB document, asked about at the end.

    python benchmarks/rlm_local.py                 # 5 tries on `local`, default mode parameters
    python benchmarks/rlm_local.py --tries 10 --param fallback_after=0
    python benchmarks/rlm_local.py --show 0        # print the first document and exit

Each try is a different deterministic document (seeded): varied filler (prose on several topics,
log lines, config excerpts, with near-miss words such as "postal code" or "port of Lisbon"), one
planted fact ("The secret code is ...", "the default port is ...") at a different depth, and the
question on the last line. A try is correct when the expected value appears in the answer. Prints,
per try: correct or not, latency, the path that answered (model or fallback, from the response
metadata), the run status and the cap that stopped it; then accuracy and latency p50/max.
Timings depend on the machine's load: the script also times one plain `direct` call on the same
model in the same run, and prints each try's latency as a multiple of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from composite_cli.config import load_settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.runner import Runner

_TOPICS = [
    "The {adj} garden behind the {place} was planted in {year} with {n} {plant} bushes.",
    "Visitors to the {place} often ask about the {adj} {thing}, which was restored in {year}.",
    "The ferry leaves the port of {city} every {n} minutes in summer and every hour in winter.",
    "Letters to the {place} need the postal code {zip} and a stamp worth {n} cents.",
    "In {year} the {adj} committee voted {n} to {m} to extend the {thing} by {n} metres.",
    "The {plant} harvest in {city} reached {n} tonnes, {m} percent more than the year before.",
    "Our team reviewed the source code of the {thing} module and closed {n} old tickets.",
    "The {adj} bridge near {city} carries about {n} cars a day and was painted in {year}.",
    "A {adj} storm in {year} closed the {place} for {n} days; repairs cost {m} thousand euros.",
    "Students in {city} can borrow up to {n} books from the {place} for {m} weeks.",
    "The museum's {adj} collection holds {n} maps of {city}, the oldest from {year}.",
    "Each {thing} is inspected every {n} months by two engineers from {city}.",
    "The choir of {city} rehearses on Tuesdays in the {adj} hall of the {place}.",
    "Bakers in {city} sell about {n} loaves of {plant} bread before nine each morning.",
]
_LOGS = [
    "2024-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d} INFO worker-{n} finished job {job} in {m} ms",
    "2024-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d} WARN cache miss rate {m}% on shard {n}",
    "2024-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d} INFO order {job} shipped from {city} to {city2}",
]
_CONFIG = [
    '[{thing}]\ntimeout = {n}\nretries = {m}\nregion = "{city}"',
    "# {adj} settings for the {thing} service\nlog_level = info\nworkers = {n}",
]
_WORDS = {
    "adj": ["old", "quiet", "northern", "busy", "small", "famous", "green", "restored", "narrow", "public"],
    "place": ["town hall", "library", "old mill", "train station", "market", "harbour office", "school"],
    "thing": ["clock tower", "water pump", "billing", "footbridge", "scheduler", "lighthouse", "archive"],
    "plant": ["rose", "lavender", "apple", "rye", "olive", "hazel", "barley"],
    "city": ["Lisbon", "Porto", "Lyon", "Ghent", "Bergen", "Turku", "Graz", "Split", "Cork", "Malmo"],
}
FACTS = [
    ("The secret code is {value}.", "What is the secret code?", "{l1}{l2}-{n4}"),
    ("The default port is {value}.", "What is the default port?", "{p}"),
    ("The name of the ship is the {value}.", "What is the name of the ship?", "{ship}"),
]
_SHIPS = ["Morning Heron", "Silver Pike", "Blue Albatross", "Iron Gull", "Quiet Tern"]


@dataclass(frozen=True)
class Case:
    text: str
    question: str
    expected: str
    depth: float


def make_case(seed: int, size: int | None = None, depth: float | None = None) -> Case:
    """One deterministic document of 30-60 kB with one fact planted at `depth` (0..1)."""
    rng = random.Random(seed)
    size = size or rng.randint(30_000, 60_000)
    depth = depth if depth is not None else [0.1, 0.3, 0.5, 0.7, 0.9][seed % 5]
    fact, question, pattern = FACTS[seed % len(FACTS)]
    value = pattern.format(
        l1=rng.choice("BCDFGHJKLMNPQRSTVWXZ"),
        l2=rng.choice("BCDFGHJKLMNPQRSTVWXZ"),
        n4=rng.randint(1000, 9999),
        p=rng.choice([8443, 5432, 6380, 9091, 7001, 8088]),
        ship=rng.choice(_SHIPS),
    )

    def fill(template: str) -> str:
        city, city2 = rng.sample(_WORDS["city"], 2)
        words = {k: rng.choice(v) for k, v in _WORDS.items()}
        words.update(city=city, city2=city2)
        return template.format(
            **words,
            year=rng.randint(1850, 2023),
            n=rng.randint(2, 400),
            m=rng.randint(2, 99),
            zip=rng.randint(10000, 99999),
            job=rng.randint(10000, 99999),
            mo=rng.randint(1, 12),
            d=rng.randint(1, 28),
            h=rng.randint(0, 23),
            mi=rng.randint(0, 59),
            s=rng.randint(0, 59),
        )

    blocks: list[str] = []
    total = 0
    while total < size:
        kind = rng.random()
        if kind < 0.6:
            block = " ".join(fill(rng.choice(_TOPICS)) for _ in range(rng.randint(3, 7)))
        elif kind < 0.85:
            block = "\n".join(fill(rng.choice(_LOGS)) for _ in range(rng.randint(4, 12)))
        else:
            block = fill(rng.choice(_CONFIG))
        blocks.append(block)
        total += len(block) + 2
    at = max(1, min(len(blocks) - 1, int(len(blocks) * depth)))
    host = blocks[at]
    if "\n" in host or host.startswith("#") or host.startswith("["):
        blocks.insert(at, fact.format(value=value))
    else:  # inside a prose paragraph, between two sentences
        sentences = host.split(". ")
        cut = rng.randint(1, max(1, len(sentences) - 1))
        blocks[at] = (
            ". ".join(sentences[:cut]) + ". " + fact.format(value=value) + " " + ". ".join(sentences[cut:])
        )
    text = "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return Case(text, question, value, depth)


# -- running ------------------------------------------------------------------------------------


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


async def one_try(runner: Runner, case: Case, params: dict[str, Any]) -> dict[str, Any]:
    request = RunRequest(messages=[{"role": "user", "content": case.text}], params=params, source="bench")
    t0 = time.perf_counter()
    result = await runner.run("rlm-v1", request)
    latency = time.perf_counter() - t0
    notes = result.notes.get("rlm") or {}
    return {
        "correct": case.expected.lower() in result.text.lower(),
        "latency_s": latency,
        "path": notes.get("path", "?"),
        "reason": notes.get("reason", ""),
        "status": result.status,
        "stopped_by": result.stopped_by,
        "answer": result.text,
        "calls": result.calls,
    }


async def direct_call(runner: Runner) -> float:
    """One short `direct` call on the same model: the load yardstick for this run."""
    t0 = time.perf_counter()
    await runner.run(
        "direct",
        RunRequest(
            messages=[{"role": "user", "content": "Name one chess opening."}],
            generation={"max_tokens": 32, "temperature": 0.0},
            source="bench",
        ),
    )
    return time.perf_counter() - t0


def parse_params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        value: Any
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        out[key] = value
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the first document's seed")
    parser.add_argument("--param", action="append", default=[], help="a mode parameter, key=value")
    parser.add_argument("--show", type=int, default=None, help="print document SEED and exit")
    args = parser.parse_args()
    if args.show is not None:
        case = make_case(args.show)
        print(case.text)
        log(f"{len(case.text)} chars, expected {case.expected!r}, depth {case.depth}")
        return 0
    params = parse_params(args.param)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(load_settings(profile="local", db=Path(tmp) / "bench.db"))
        try:
            yardstick = await direct_call(runner)  # also loads the model
            yardstick = min(yardstick, await direct_call(runner))
            log(f"one direct call (32 tokens): {yardstick:.2f} s")
            rows = []
            for i in range(args.tries):
                case = make_case(args.seed + i)
                row = await one_try(runner, case, params)
                rows.append(row)
                mark = "ok  " if row["correct"] else "MISS"
                stop = f" stopped_by={row['stopped_by']}" if row["stopped_by"] else ""
                ratio = row["latency_s"] / yardstick
                print(
                    f"try {i + 1}: {mark} {row['latency_s']:6.1f} s ({ratio:5.1f}x direct) "
                    f"path={row['path']} status={row['status']}{stop} calls={row['calls']} "
                    f"{len(case.text) // 1000} kB depth={case.depth} expected={case.expected!r} "
                    f"answer={row['answer'][:80]!r}",
                    flush=True,
                )
        finally:
            runner.close()
    latencies = [r["latency_s"] for r in rows]
    correct = sum(r["correct"] for r in rows)
    paths = {p: sum(1 for r in rows if r["path"] == p) for p in sorted({r["path"] for r in rows})}
    print(
        f"accuracy {correct}/{len(rows)}; latency p50 {statistics.median(latencies):.1f} s, "
        f"max {max(latencies):.1f} s; within 90 s: {sum(1 for x in latencies if x <= 90)}/{len(rows)}; "
        f"paths {paths}; direct call {yardstick:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
