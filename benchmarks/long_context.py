"""Long-context benchmark: `direct` (one call to a perfect reader with an 8,000-character window)
against `rlm-v1` (scripted root + scripted sub-model) on evals/long_context.jsonl.

    python benchmarks/long_context.py                 # all 18 cases, both modes, latency test (~1 min)
    python benchmarks/long_context.py --limit 6 --json
    python benchmarks/long_context.py --local-root 3  # also: rlm-v1 with the embedded model as root+sub

The scripted models (benchmarks/scripted_models.py) are deterministic, so the figures measure the
RLM machinery (chunking, llm_query_batched, REPL round trips, caps), not a model's skill. The
`--local-root` part is the honest figure for the embedded 135M model acting as the root.
Progress goes to stderr; tables (or --json) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scripted_models

from composite_cli.calls import new_id
from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest
from composite_cli.runner import Runner

EVALS = Path(__file__).resolve().parent.parent / "evals" / "long_context.jsonl"
SIZES = ["2k", "20k", "50k", "100k", "200k", "500k", "1M", "2M"]
PROFILES = {
    "direct": Profile("scripted-direct", {"*": {"model": "scripted/reader"}}),
    "rlm-v1": Profile("scripted-rlm", {"root": {"model": "scripted/root"}, "sub": {"model": "scripted/sub"}}),
}
LATENCY_S = 0.02


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- scoring ----------------------------------------------------------------------------------


def score(case: dict[str, Any], answer: str) -> bool:
    expected = case["expected"]
    if case["scorer"] == "contains":
        options = expected if isinstance(expected, list) else [expected]
        return any(str(e).lower() in answer.lower() for e in options)
    if case["scorer"] == "numeric":
        tolerance = float(case.get("tolerance") or 0)
        return any(
            abs(float(n) - float(expected)) <= tolerance for n in re.findall(r"-?\d+(?:\.\d+)?", answer)
        )
    raise ValueError(f"unsupported scorer {case['scorer']!r}")


# -- running ------------------------------------------------------------------------------------


def answer_in_preview(case: dict[str, Any]) -> str:
    """Whether a needle's code is readable in the root's first message (first/last 600 chars,
    question line left out): then a root can copy it without any code. Other kinds: n/a."""
    if "needle" not in case["metadata"]["tags"]:
        return "n/a"
    text = case["input"]
    document = text[: text.rfind("Question:")]
    preview = (text[:600] + "\n" + text[-600:]).replace(text[len(document) :], "").lower()
    expected = case["expected"] if isinstance(case["expected"], list) else [case["expected"]]
    return "yes" if any(str(e).lower() in preview for e in expected) else "no"


def load_cases(limit: int | None) -> list[dict[str, Any]]:
    cases = [json.loads(line) for line in EVALS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return cases[:limit] if limit else cases


def trace_row(runner: Runner, run_id: str) -> dict[str, Any]:
    """The run's row plus counts from its steps (sub-call errors, REPL blocks)."""
    runner.flush()
    con = sqlite3.connect(str(runner.settings.db_path))
    con.row_factory = sqlite3.Row
    try:
        row = con.execute(
            "select status, calls, rlm_iterations, rlm_sub_calls, prompt_tokens, completion_tokens, error "
            "from runs where id = ?",
            (run_id,),
        ).fetchone()
        steps = con.execute(
            "select kind, name, alias, status, error, output, response_json, scratchpad, prompt_tokens "
            "from steps "
            "where run_id = ? order by seq",
            (run_id,),
        ).fetchall()
    finally:
        con.close()
    out = dict(row) if row else {}
    out["sub_errors"] = sum(
        1 for s in steps if s["kind"] == "llm" and s["alias"] == "sub" and s["status"] == "error"
    )
    out["repl_blocks"] = sum(1 for s in steps if s["kind"] == "repl")
    out["repl_ok"] = sum(1 for s in steps if s["kind"] == "repl" and s["status"] == "ok")
    out["repl_errors"] = [
        s["output"] or s["error"] or "" for s in steps if s["kind"] == "repl" and s["status"] != "ok"
    ]
    roots = [s for s in steps if s["kind"] == "llm" and str(s["name"]).startswith("root")]
    out["root_replies"] = [
        (json.loads(s["response_json"] or "{}").get("message") or {}).get("content") or ""
        if s["status"] == "ok"
        else f"<{s['status']}: {s['error']}>"
        for s in roots
    ]
    out["root_prompt_tokens"] = [s["prompt_tokens"] for s in roots]
    notes = [s["scratchpad"] or "" for s in steps if s["kind"] == "rlm" and s["name"] == "answer"]
    out["rlm_notes"] = notes[0] if notes else ""
    return out


async def run_case(
    runner: Runner, mode: str, profile: Profile, case: dict[str, Any], params: dict[str, Any] | None = None
) -> dict[str, Any]:
    run_id = new_id()
    request = RunRequest(
        messages=[{"role": "user", "content": case["input"]}], params=dict(params or {}), source="bench"
    )
    t0 = time.perf_counter()
    answer, status, error = "", "error", None
    try:
        result = await runner.run(mode, request, profile=profile, run_id=run_id)
        answer, status = result.text, result.status
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"
    wall = time.perf_counter() - t0
    trace = trace_row(runner, run_id)
    return {
        "id": case["id"],
        "kind": next(t for t in case["metadata"]["tags"] if t != "long-context"),
        "size": case["metadata"]["size"],
        "chars": len(case["input"]),
        "mode": mode,
        "answer": answer,
        "expected": case["expected"],
        "correct": error is None and score(case, answer),
        "status": status,
        "error": error,
        "wall_s": wall,
        "calls": trace.get("calls"),
        "sub_calls": trace.get("rlm_sub_calls") or 0,
        "iterations": trace.get("rlm_iterations") or 0,
        "sub_errors": trace["sub_errors"],
        "repl_blocks": trace["repl_blocks"],
        "repl_ok": trace["repl_ok"],
        "repl_errors": trace["repl_errors"],
        "root_replies": trace["root_replies"],
        "root_prompt_tokens": trace["root_prompt_tokens"],
        "rlm_notes": trace["rlm_notes"],
        "answer_in_preview": answer_in_preview(case),
        "prompt_tokens": trace.get("prompt_tokens"),
    }


async def accuracy(
    runner: Runner, cases: list[dict[str, Any]], modes: Iterable[tuple[str, str, Profile, dict[str, Any]]]
) -> list[dict[str, Any]]:
    rows = []
    for label, mode, profile, params in modes:
        for case in cases:
            row = await run_case(runner, mode, profile, case, params)
            row["label"] = label
            rows.append(row)
            mark = "ok " if row["correct"] else ("ERR" if row["error"] else "xx ")
            shown = one_line(row["error"] or row["answer"], 70)
            log(
                f"  [{label}] {case['id']:<13} {row['size']:>4} {mark} {row['wall_s']:6.2f}s "
                f"subcalls={row['sub_calls']:<4} {row['status']:<7} {shown!r}"
            )
    return rows


async def parallel_vs_sequential(
    runner: Runner, cases: list[dict[str, Any]], repeats: int = 2
) -> dict[str, Any]:
    """rlm-v1 with a sub-model that sleeps LATENCY_S per call, concurrency 8 vs 1."""
    profile = Profile(
        "scripted-rlm-slow",
        {"root": {"model": "scripted/root"}, "sub": {"model": "scripted/sub", "latency": LATENCY_S}},
    )
    out = []
    for case in cases:
        walls: dict[int, list[float]] = {8: [], 1: [], 0: []}
        subs, correct = 0, True
        for _ in range(repeats):
            for conc in (
                8,
                1,
                0,
            ):  # interleaved so machine noise hits all alike; 0: no latency, concurrency 8
                row = await run_case(
                    runner,
                    "rlm-v1",
                    profile if conc else PROFILES["rlm-v1"],
                    case,
                    {"concurrency": conc or 8},
                )
                walls[conc].append(row["wall_s"])
                subs = row["sub_calls"]
                correct = correct and row["correct"]
        par, seq, base = (statistics.median(walls[k]) for k in (8, 1, 0))
        log(
            f"  [latency] {case['id']:<13} subcalls={subs} parallel(8)={par:.2f}s sequential(1)={seq:.2f}s "
            f"no-latency={base:.2f}s ratio={seq / par:.2f}"
        )
        out.append(
            {
                "id": case["id"],
                "size": case["metadata"]["size"],
                "sub_calls": subs,
                "parallel_s": par,
                "sequential_s": seq,
                "no_latency_s": base,
                "ratio": seq / par,
                "ratio_above_no_latency": (seq - base) / (par - base) if par > base else None,
                "ideal_parallel_latency_s": -(-subs // 8) * LATENCY_S,
                "correct": correct,
            }
        )
    return {
        "latency_per_sub_call_s": LATENCY_S,
        "cases": out,
        "ratio_total": sum(c["sequential_s"] for c in out) / sum(c["parallel_s"] for c in out)
        if out
        else None,
    }


# -- printing -----------------------------------------------------------------------------------


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    labels = list(dict.fromkeys(r["label"] for r in rows))
    per_mode = {}
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        per_mode[label] = {
            "n": len(rs),
            "correct": sum(r["correct"] for r in rs),
            "errors": sum(1 for r in rs if r["error"]),
            "partial": sum(1 for r in rs if r["status"] == "partial"),
            "mean_sub_calls": statistics.mean(r["sub_calls"] for r in rs),
            "mean_wall_s": statistics.mean(r["wall_s"] for r in rs),
            "error_types": sorted({r["error"].split(":")[0] for r in rs if r["error"]}),
            "by_size": {
                size: [
                    sum(r["correct"] for r in rs if r["size"] == size),
                    sum(1 for r in rs if r["size"] == size),
                ]
                for size in SIZES
                if any(r["size"] == size for r in rs)
            },
            "by_kind": {
                kind: [
                    sum(r["correct"] for r in rs if r["kind"] == kind),
                    sum(1 for r in rs if r["kind"] == kind),
                ]
                for kind in ("needle", "counting", "aggregation")
                if any(r["kind"] == kind for r in rs)
            },
        }
    return per_mode


def table(headers: list[str], rows: list[list[Any]], right: Iterable[int] = ()) -> None:
    """Print rows under headers; columns in `right` are right-aligned."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    aligned = set(right)
    for row in cells:
        parts = [
            c.rjust(w) if i in aligned else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(parts).rstrip())


def one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def print_tables(
    rows: list[dict[str, Any]], per_mode: dict[str, Any], latency: dict[str, Any] | None
) -> None:
    print("\nPer case")
    table(
        ["case", "size", "mode", "ok", "status", "sub", "wall s", "answer / error"],
        [
            [
                r["id"],
                r["size"],
                r["label"],
                "yes" if r["correct"] else "no",
                r["status"],
                r["sub_calls"],
                f"{r['wall_s']:.2f}",
                one_line(r["error"] or r["answer"], 60),
            ]
            for r in rows
        ],
        right=(1, 5, 6),
    )

    print("\nPer mode")
    table(
        ["mode", "accuracy", "errors", "partial", "sub-calls/item", "wall s/item", "error types"],
        [
            [
                label,
                f"{m['correct']}/{m['n']}",
                m["errors"],
                m["partial"],
                f"{m['mean_sub_calls']:.1f}",
                f"{m['mean_wall_s']:.3f}",
                ", ".join(m["error_types"]) or "-",
            ]
            for label, m in per_mode.items()
        ],
        right=(1, 2, 3, 4, 5),
    )

    sizes = [s for s in SIZES if any(s in m["by_size"] for m in per_mode.values())]
    print("\nAccuracy per size bucket (correct/n)")
    table(
        ["mode", *sizes],
        [
            [
                label,
                *(f"{m['by_size'][s][0]}/{m['by_size'][s][1]}" if s in m["by_size"] else "-" for s in sizes),
            ]
            for label, m in per_mode.items()
        ],
        right=range(1, len(sizes) + 1),
    )

    print("\nAccuracy per kind (correct/n)")
    kinds = ["needle", "counting", "aggregation"]
    table(
        ["mode", *kinds],
        [
            [
                label,
                *(f"{m['by_kind'][k][0]}/{m['by_kind'][k][1]}" if k in m["by_kind"] else "-" for k in kinds),
            ]
            for label, m in per_mode.items()
        ],
        right=(1, 2, 3),
    )

    if latency:
        ms = latency["latency_per_sub_call_s"] * 1000
        print(
            f"\nllm_query_batched: concurrency 8 (parallel) vs 1 (sequential); sub-model sleeps {ms:.0f} ms"
        )
        print("per call; median of 2 runs each. no-latency: same run with a 0 ms sub-model (fixed overhead);")
        print("above: (sequential - no-latency) / (parallel - no-latency); ideal par: ceil(sub/8) x latency")
        table(
            [
                "case",
                "size",
                "sub-calls",
                "parallel s",
                "sequential s",
                "no-latency s",
                "ideal par s",
                "seq/par",
                "above",
            ],
            [
                [
                    c["id"],
                    c["size"],
                    c["sub_calls"],
                    f"{c['parallel_s']:.3f}",
                    f"{c['sequential_s']:.3f}",
                    f"{c['no_latency_s']:.3f}",
                    f"{c['ideal_parallel_latency_s']:.2f}",
                    f"{c['ratio']:.2f}",
                    f"{c['ratio_above_no_latency']:.2f}" if c["ratio_above_no_latency"] else "-",
                ]
                for c in latency["cases"]
            ]
            + [["all", "", "", "", "", "", "", f"{latency['ratio_total']:.2f}", ""]],
            right=range(1, 9),
        )


def print_local(rows: list[dict[str, Any]]) -> None:
    print("\nrlm-v1 with the embedded model (local/smollm2) as root and sub, max_iterations 4")
    table(
        [
            "case",
            "size",
            "ok",
            "code in preview",
            "status",
            "stopped by",
            "iter",
            "repl ok/blocks",
            "sub",
            "wall s",
            "answer / error",
        ],
        [
            [
                r["id"],
                r["size"],
                "yes" if r["correct"] else "no",
                r["answer_in_preview"],
                r["status"],
                one_line(r["rlm_notes"].split("stopped: ")[-1] if "stopped: " in r["rlm_notes"] else "-", 40),
                r["iterations"],
                f"{r['repl_ok']}/{r['repl_blocks']}",
                r["sub_calls"],
                f"{r['wall_s']:.1f}",
                repr(one_line(r["error"] or r["answer"], 60)),
            ]
            for r in rows
        ],
        right=(1, 4, 5, 6, 7),
    )
    for r in rows:
        print(f"\n--- {r['id']}: {len(r['root_replies'])} root replies; engine notes: {r['rlm_notes']!r}")
        print(f"    root prompt tokens per call (as reported by the model): {r['root_prompt_tokens']}")
        for i, reply in enumerate(r["root_replies"], 1):
            print(f"[root {i}] {reply[:600]!r}")
        for err in r["repl_errors"][:3]:
            last = err.strip().splitlines()[-1] if err.strip() else ""
            print(f"[repl error] {last[:200]!r}")


# -- main -----------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    scripted_models.register()
    cases = load_cases(args.limit)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="composite-lc-") as tmp:
        runner = Runner(Settings(profile=PROFILES["direct"], db_path=Path(tmp) / "traces.db"))
        try:
            modes: list[tuple[str, str, Profile, dict[str, Any]]] = [
                ("direct", "direct", PROFILES["direct"], {}),
                ("rlm-v1", "rlm-v1", PROFILES["rlm-v1"], {}),
            ]
            if args.max_calls_variant:
                modes.append(("rlm-v1 max_calls=1000", "rlm-v1", PROFILES["rlm-v1"], {"max_calls": 1000}))
            log(f"accuracy: {len(cases)} cases x {len(modes)} modes")
            rows = await accuracy(runner, cases, modes)
            out["rows"] = rows
            out["per_mode"] = summary(rows)
            if not args.skip_latency:
                # the largest cases whose ~3,000-char chunks fit in a small call budget
                fitting = [c for c in load_cases(None) if len(c["input"]) // 2900 + 2 < 120]
                picked = sorted(fitting, key=lambda c: len(c["input"]))[-3:]
                log(f"parallel vs sequential on {', '.join(c['id'] for c in picked)}")
                out["latency"] = await parallel_vs_sequential(runner, picked)
            if args.local_root:
                smallest = sorted(load_cases(None), key=lambda c: len(c["input"]))[: args.local_root]
                local = Profile("local", {"*": {"model": "local/smollm2"}})
                params = {"max_iterations": 4, "deadline": args.local_deadline}
                names = ", ".join(c["id"] for c in smallest)
                log(f"local root on {names} (deadline {args.local_deadline:g}s each)")
                out["local"] = await accuracy(runner, smallest, [("rlm-v1 local", "rlm-v1", local, params)])
        finally:
            runner.close()
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases of the file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--local-root",
        type=int,
        default=0,
        metavar="N",
        help="also run rlm-v1 with the embedded model as root and sub on the N smallest cases",
    )
    parser.add_argument("--local-deadline", type=float, default=240.0, help="rlm deadline (s) per local case")
    parser.add_argument("--skip-latency", action="store_true", help="skip the parallel vs sequential test")
    parser.add_argument(
        "--no-max-calls-variant",
        dest="max_calls_variant",
        action="store_false",
        help="skip the extra rlm-v1 row with max_calls raised to 1000",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    out = asyncio.run(main(args))
    log(f"done in {time.perf_counter() - started:.1f}s")
    if args.json:
        for row in out.get("rows", []) + out.get("local", []):
            row["root_replies"] = [r[:2000] for r in row["root_replies"]]
        print(json.dumps(out, indent=2, default=str))
        return
    print_tables(out["rows"], out["per_mode"], out.get("latency"))
    if out.get("local"):
        print_local(out["local"])


if __name__ == "__main__":
    cli()
