"""The eval report: per mode quality with confidence intervals, latency, tokens, cost and calls;
paired comparisons between modes on the same cases; the quality/cost and quality/latency Pareto
fronts; and a case-by-case comparison of two eval runs. Output as text, Markdown or JSON."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

from composite_cli.evals import stats
from composite_cli.evals.runner import EvalError
from composite_cli.evals.stats.summary import partial_note
from composite_cli.traces.reader import EvalRunNotFound, TraceReader
from composite_cli.traces.store import TraceStore

ALPHA = 0.05
POWER = 0.8  # the power a "cases needed" estimate is for


def _load(store: TraceStore, eval_run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The eval run and its results, each with its run's `run_status` (ok, partial, error...) and
    `stopped_by` (the cap behind a partial run; null in databases from before it was recorded)."""
    try:
        return TraceReader(store).eval_run_with_results(eval_run_id)
    except EvalRunNotFound as exc:
        raise EvalError(str(exc)) from None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def _partial(rows: list[dict[str, Any]]) -> Counter[str]:
    """How many scored results each cap stopped early (their run answered, but partially)."""
    return Counter(
        str(r.get("stopped_by") or "an unnamed cap")
        for r in rows
        if r["error"] is None and r["score"] is not None and r.get("run_status") == "partial"
    )


def _mention_partial(pair: dict[str, Any], notes: Iterable[str | None]) -> None:
    """A verdict on answers a cap cut short says so: the notes are added to `pair["verdict"]`."""
    said = [note for note in notes if note]
    if said:
        pair["verdict"] = f"{pair['verdict']}; {' and '.join(said)}"


def _n_text(cases: int, repeats: int) -> str:
    """ "5 cases × 3 repeats", or "5 cases" without repeats."""
    text = f"{cases} case" + ("" if cases == 1 else "s")
    return f"{text} × {repeats} repeats" if repeats > 1 else text


def mode_summary(mode: str, rows: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    ok = [r for r in rows if r["error"] is None and r["score"] is not None]
    scores = [float(r["score"]) for r in ok]
    binary = _is_binary(scores)
    cases = [str(r["case_id"]) for r in ok]
    # Repeats of one case are correlated: with more than one row per case the interval treats
    # the case, not the row, as the unit (a design effect for Wilson, cases resampled whole).
    clustered = len(set(cases)) < len(cases)
    if binary and clustered:
        low, high = stats.clustered_wilson_interval([s == 1.0 for s in scores], cases)
        method = "wilson-clustered"
    elif binary:
        low, high = stats.wilson_interval(int(sum(scores)), len(scores))
        method = "wilson"
    elif clustered:
        low, high = stats.cluster_bootstrap_mean_ci(scores, cases)
        method = "case-bootstrap"
    else:
        low, high = stats.bootstrap_mean_ci(scores) if scores else (math.nan, math.nan)
        method = "bootstrap"
    latencies = [float(r["latency_ms"]) for r in ok if r["latency_ms"] is not None]
    costs = [r["cost_usd"] for r in ok]
    stopped_by = _partial(rows)
    partial = stopped_by.total()
    summary: dict[str, Any] = {
        "mode": mode,
        "n": len(rows),
        "scored": len(ok),
        "errors": len(rows) - len(ok),
        # answered, but a cap stopped the run: the best answer so far was scored
        "partial": partial,
        "stopped_by": dict(stopped_by),
        "partial_note": partial_note(mode, partial, len(rows), stopped_by),
        # what the interval rests on: n cases, each run `repeats` times
        "cases": len(set(cases)),
        "repeats": repeats,
        "n_text": _n_text(len(set(cases)), repeats),
        "score": _mean(scores),
        "ci": [low, high] if scores else None,
        "ci_method": method,
        # the variance of the mean relative to independent rows (1 without repeats)
        "design_effect": stats.design_effect(scores, cases) if scores else None,
        "binary": binary,
        "latency_ms_p50": stats.percentile(latencies, 50),
        "latency_ms_p95": stats.percentile(latencies, 95),
        "tokens_mean": _mean([float(r["tokens"] or 0) for r in ok]),
        # unknown prices make the mean unknown, never a made-up 0
        "cost_usd_mean": None
        if any(c is None for c in costs) or not costs
        else _mean([float(c) for c in costs]),
        # the mean over the results with a price, and how many had none (the TUI shows both)
        "cost_usd_mean_priced": _mean([float(c) for c in costs if c is not None]),
        "unpriced": sum(1 for c in costs if c is None),
        "calls_mean": _mean([float(r["calls"] or 0) for r in ok]),
        "cached_calls": sum(int(r["cached_calls"] or 0) for r in ok),
    }
    if repeats > 1 and binary:
        per_case: dict[str, list[float]] = defaultdict(list)
        for r in ok:
            per_case[r["case_id"]].append(float(r["score"]))
        for key, fn in (("pass_at_k", stats.pass_at_k), ("pass_hat_k", stats.pass_hat_k)):
            summary[key] = {
                str(k): _mean([fn(len(v), int(sum(v)), k) for v in per_case.values() if len(v) >= k])
                for k in range(1, repeats + 1)
            }
    return summary


def _per_case(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each case's score, averaged over repeats (cases with an error in any repeat are left out)."""
    grouped: dict[str, list[float]] = defaultdict(list)
    failed = set()
    for r in rows:
        if r["error"] is not None or r["score"] is None:
            failed.add(r["case_id"])
        else:
            grouped[r["case_id"]].append(float(r["score"]))
    return {case: sum(v) / len(v) for case, v in grouped.items() if case not in failed}


def compare_pair(
    name_a: str,
    a: dict[str, float],
    name_b: str,
    b: dict[str, float],
    repeats: int = 1,
    *,
    pass_fail: bool = False,
) -> dict[str, Any]:
    """A paired comparison of two modes over the cases both answered, each case's score the
    mean of its repeats (the case is the unit: repeats are not independent pairs). A pair the
    data cannot separate gets `cases_needed`: the cases a paired test of the same kind would
    need to detect a difference of the observed size (power 0.8 at alpha 0.05). `pass_fail`: the
    rows were pass/fail, so differences of repeat means are shown in points too."""
    common = sorted(set(a) & set(b))
    xs, ys = [a[c] for c in common], [b[c] for c in common]
    binary = _is_binary(xs) and _is_binary(ys)
    out: dict[str, Any] = {"a": name_a, "b": name_b, "n": len(common), "repeats": repeats}
    out["percent"] = binary or pass_fail  # differences are proportions: shown in points
    if not common:
        out.update(
            diff=None,
            ci=None,
            p=None,
            p_adjusted=None,
            comparisons=0,
            test=None,
            binary=binary,
            cases_needed=None,
            wins_a=0,
            wins_b=0,
            ties=0,
            separable=False,
            verdict=f"No case was answered by both {name_a} and {name_b}.",
        )
        return out
    if binary:
        result = stats.paired_proportion_diff([x == 1.0 for x in xs], [y == 1.0 for y in ys])
        test = "exact McNemar"
        only_a = sum(1 for x, y in zip(xs, ys, strict=True) if x > y) / len(common)
        only_b = sum(1 for x, y in zip(xs, ys, strict=True) if y > x) / len(common)
        needed = stats.mcnemar_cases_needed(only_a, only_b, ALPHA, POWER)
    else:
        result = stats.paired_bootstrap(xs, ys)
        test = "paired bootstrap"
        needed = stats.paired_cases_needed([x - y for x, y in zip(xs, ys, strict=True)], ALPHA, POWER)
    out.update(
        diff=result.diff,
        ci=[result.low, result.high],
        p=result.p,
        p_adjusted=result.p,
        comparisons=1,
        test=test,
        binary=binary,
        cases_needed=needed,
        wins_a=sum(1 for x, y in zip(xs, ys, strict=True) if x > y),
        wins_b=sum(1 for x, y in zip(xs, ys, strict=True) if y > x),
        ties=sum(1 for x, y in zip(xs, ys, strict=True) if x == y),
    )
    _write_verdict(out)
    return out


def _write_verdict(pair: dict[str, Any]) -> None:
    """`separable` and `verdict` from the pair's numbers: the p-value is the Holm-adjusted one
    when the pair is one of several comparisons, and says so; a pair the data cannot separate
    ends with the power estimate."""
    low, high = pair["ci"]
    result = stats.PairedResult(pair["diff"], low, high, pair["p_adjusted"])
    m = pair["comparisons"]
    note = f"Holm-adjusted over {m} comparisons" if m > 1 else ""
    pair["separable"] = result.is_separable(ALPHA)
    text = stats.verdict(pair["a"], pair["b"], result, alpha=ALPHA, percent=pair["percent"], p_note=note)
    if not pair["separable"]:
        text += "; " + _power_note(pair)
    pair["verdict"] = text


def _power_note(pair: dict[str, Any]) -> str:
    needed, n = pair["cases_needed"], pair["n"]
    has = f"this eval has {n}"
    if needed is None:
        return f"no difference to size a power estimate on ({has} cases)"
    size = f"{abs(pair['diff']) * 100:.1f} points" if pair["percent"] else f"{abs(pair['diff']):.3g}"
    return (
        f"a difference of {size} would need about {needed} cases to detect "
        f"({POWER * 100:g}% power at alpha {ALPHA:g}, {pair['test']}; {has})"
    )


def adjust_for_multiple_comparisons(pairs: list[dict[str, Any]]) -> None:
    """Holm-adjust the p-values of the pairs that were tested, as one family, and rewrite their
    verdicts: with several comparisons, one of them reaching p < 0.05 by chance is likely."""
    tested = [pair for pair in pairs if pair["p"] is not None]
    if len(tested) < 2:
        return
    for pair, adjusted in zip(tested, stats.holm_adjust([pair["p"] for pair in tested]), strict=True):
        pair["p_adjusted"] = adjusted
        pair["comparisons"] = len(tested)
        _write_verdict(pair)


def build_report(store: TraceStore, eval_run_id: str) -> dict[str, Any]:
    """Everything `composite eval report` shows, as plain data (the --json output)."""
    run, results = _load(store, eval_run_id)
    modes = json.loads(run["modes"])
    settings = json.loads(run["settings"] or "{}")
    repeats = int(settings.get("repeats", 1))
    by_mode: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for row in results:
        by_mode.setdefault(row["mode"], []).append(row)
    summaries = [mode_summary(m, rows, repeats) for m, rows in by_mode.items()]
    per_case = {m: _per_case(rows) for m, rows in by_mode.items()}
    by_name = {s["mode"]: s for s in summaries}
    pairs = [
        compare_pair(
            a, per_case[a], b, per_case[b], repeats, pass_fail=by_name[a]["binary"] and by_name[b]["binary"]
        )
        for a, b in combinations(by_mode, 2)
    ]
    adjust_for_multiple_comparisons(pairs)
    for pair in pairs:
        _mention_partial(
            pair, (partial_note(m, by_name[m]["partial"], by_name[m]["n"]) for m in (pair["a"], pair["b"]))
        )
    quality = {s["mode"]: s["score"] for s in summaries if s["score"] is not None}
    fronts = {}
    for axis, key in (("cost", "cost_usd_mean"), ("latency", "latency_ms_p50")):
        points = {s["mode"]: (quality[s["mode"]], s[key]) for s in summaries if s["mode"] in quality}
        fronts[axis] = stats.pareto_front(points)
    return {
        "eval_run": {
            "id": run["id"],
            "file": run["file"],
            "file_hash": run["file_hash"],
            "profile": run["profile"],
            "status": run["status"],
            "created_at": run["created_at"],
            "cases": run["cases"],
            "modes": modes,
            "repeats": repeats,
            "results": len(results),
        },
        "modes": summaries,
        "pairs": pairs,
        "pareto": fronts,
    }


def compare_runs(store: TraceStore, id_a: str, id_b: str) -> dict[str, Any]:
    """Two eval runs, case by case, for each mode they share (or their only modes). Partial runs
    (a cap stopped them; their best answers so far were scored) are counted per side, named in
    the verdict, and described with their caps in `partial_notes`."""
    run_a, rows_a = _load(store, id_a)
    run_b, rows_b = _load(store, id_b)
    modes_a, modes_b = json.loads(run_a["modes"]), json.loads(run_b["modes"])
    repeats_a, repeats_b = (int(json.loads(r["settings"] or "{}").get("repeats", 1)) for r in (run_a, run_b))
    repeats = repeats_a if repeats_a == repeats_b else 1  # only said when both ran the same repeats
    shared = [m for m in modes_a if m in modes_b]
    pairs = [(m, m) for m in shared] or (
        [(modes_a[0], modes_b[0])] if len(modes_a) == len(modes_b) == 1 else []
    )
    if not pairs:
        raise EvalError(f"eval runs {id_a} and {id_b} share no mode to compare")
    out: dict[str, Any] = {
        "a": id_a,
        "b": id_b,
        "same_file": run_a["file_hash"] == run_b["file_hash"],
        "modes": [],
    }
    compared = []
    for mode_a, mode_b in pairs:
        results_a = [r for r in rows_a if r["mode"] == mode_a]
        results_b = [r for r in rows_b if r["mode"] == mode_b]
        a, b = _per_case(results_a), _per_case(results_b)
        name_a, name_b = f"{mode_a} ({id_a})", f"{mode_b} ({id_b})"
        scored = [float(r["score"]) for r in results_a + results_b if r["score"] is not None]
        comparison = compare_pair(name_a, a, name_b, b, repeats, pass_fail=_is_binary(scored))
        compared.append((comparison, [(name_a, results_a), (name_b, results_b)]))
        common = sorted(set(a) & set(b))
        comparison["mode_a"], comparison["mode_b"] = mode_a, mode_b
        comparison["improved"] = [c for c in common if b[c] > a[c]]
        comparison["regressed"] = [c for c in common if b[c] < a[c]]
        comparison["only_in_a"] = sorted(set(a) - set(b))
        comparison["only_in_b"] = sorted(set(b) - set(a))
        out["modes"].append(comparison)
    adjust_for_multiple_comparisons([comparison for comparison, _ in compared])
    for comparison, named in compared:
        sides = [(name, len(rows), _partial(rows)) for name, rows in named]
        comparison["partial_a"], comparison["partial_b"] = (caps.total() for _, _, caps in sides)
        _mention_partial(comparison, (partial_note(name, caps.total(), n) for name, n, caps in sides))
        comparison["partial_notes"] = _best_so_far(
            partial_note(name, caps.total(), n, caps) for name, n, caps in sides
        )
    return out


# -- rendering -----------------------------------------------------------------------------------


def _pct(value: float | None, binary: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * 100:.1f}%" if binary else f"{value:.3f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms")


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def mode_rows(report: dict[str, Any]) -> list[list[str]]:
    front_cost, front_latency = set(report["pareto"]["cost"]), set(report["pareto"]["latency"])
    rows = []
    for s in report["modes"]:
        ci = s["ci"]
        interval = f"{_pct(ci[0], s['binary'])}–{_pct(ci[1], s['binary'])}" if ci else "-"
        marks = ("$" if s["mode"] in front_cost else "") + ("⏱" if s["mode"] in front_latency else "")
        rows.append(
            [
                s["mode"] + (f" {marks}" if marks else ""),
                f"{s['cases']}×{s['repeats']}" if s["repeats"] > 1 else str(s["scored"]),
                str(s["errors"]),
                str(s["partial"]),
                _pct(s["score"], s["binary"]),
                interval,
                _ms(s["latency_ms_p50"]),
                _ms(s["latency_ms_p95"]),
                "-" if s["tokens_mean"] is None else f"{s['tokens_mean']:.0f}",
                _cost(s["cost_usd_mean"]),
                "-" if s["calls_mean"] is None else f"{s['calls_mean']:.1f}",
            ]
        )
    return rows


MODE_HEADERS = [
    "mode",
    "n",
    "errors",
    "partial",
    "score",
    "95% CI",
    "p50",
    "p95",
    "tokens",
    "cost/case",
    "calls/case",
]


def _best_so_far(notes: Iterable[str | None]) -> list[str]:
    return [f"{note}; their best answers so far were scored" for note in notes if note]


def _basis(pair: dict[str, Any]) -> str:
    """What a pair's test ran on: "exact McNemar, n=5", or with repeats "paired bootstrap,
    n=5 cases, each the mean of its 3 repeats"."""
    n = f"n={pair['n']}"
    if pair.get("repeats", 1) > 1:
        n += f" cases, each the mean of its {pair['repeats']} repeats"
    return f"{pair['test'] or 'no test'}, {n}"


def pair_line(pair: dict[str, Any]) -> str:
    """A pair's verdict, the cases each mode won alone, and what the test ran on."""
    won = f"{pair['a']} {pair['wins_a']}, {pair['b']} {pair['wins_b']}"
    return f"{pair['verdict'].rstrip('.')}. Won alone: {won} ({_basis(pair)})."


def interval_notes(report: dict[str, Any]) -> list[str]:
    """A sentence when the intervals count cases rather than rows (there were repeats)."""
    repeats = report["eval_run"]["repeats"]
    if not any(s["ci_method"] in ("wilson-clustered", "case-bootstrap") for s in report["modes"]):
        return []
    return [
        f"n is cases × repeats; the {repeats} repeats of a case are not independent, so each 95% CI "
        "counts cases, not rows (Wilson with the design effect for pass/fail, whole cases "
        "resampled for graded scores)"
    ]


def partial_notes(report: dict[str, Any]) -> list[str]:
    """One sentence per mode with partial runs, the caps that stopped them, for the report's text."""
    return _best_so_far(s.get("partial_note") for s in report["modes"])


def render_markdown(report: dict[str, Any]) -> str:
    ev = report["eval_run"]
    lines = [
        f"Eval `{ev['id']}`: `{ev['file']}`, profile `{ev['profile']}`, {ev['cases']} cases, "
        f"repeats {ev['repeats']}, status {ev['status']}",
        "",
    ]
    lines.append("| " + " | ".join(MODE_HEADERS) + " |")
    lines.append("|" + "---|" * len(MODE_HEADERS))
    lines += ["| " + " | ".join(row) + " |" for row in mode_rows(report)]
    lines += ["", "$ = on the quality/cost Pareto front, ⏱ = on the quality/latency front.", ""]
    lines += [f"- {note}." for note in interval_notes(report) + partial_notes(report)]
    lines += [f"- {pair_line(pair)}" for pair in report["pairs"]]
    return "\n".join(lines)


def render_text(report: dict[str, Any]) -> Any:
    """A rich renderable: the mode table, then the pairwise verdicts."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    ev = report["eval_run"]
    table = Table(title=f"eval {ev['id']} · {ev['file']} · profile {ev['profile']} · {ev['status']}")
    for header in MODE_HEADERS:
        table.add_column(header, justify="left" if header == "mode" else "right")
    for row in mode_rows(report):
        table.add_row(*row)
    notes = [Text("$ = Pareto front for quality vs cost, ⏱ = for quality vs latency", style="dim")]
    notes += [Text(f"{note}.", style="dim") for note in interval_notes(report)]
    notes += [Text(f"{note}.", style="yellow") for note in partial_notes(report)]
    notes += [Text(pair_line(pair)) for pair in report["pairs"]]
    return Group(table, *notes)


def render_comparison(comparison: dict[str, Any]) -> str:
    lines = [
        f"eval {comparison['a']} vs {comparison['b']}"
        + ("" if comparison["same_file"] else " (the eval files differ)")
    ]
    for m in comparison["modes"]:
        lines.append(f"- {m['mode_a']} → {m['mode_b']}: {m['verdict']}")
        lines.append(f"  improved: {len(m['improved'])} ({', '.join(m['improved'][:10])})")
        lines.append(f"  regressed: {len(m['regressed'])} ({', '.join(m['regressed'][:10])})")
        lines += [f"  partial: {note}." for note in m["partial_notes"]]
        if m["only_in_a"] or m["only_in_b"]:
            lines.append(f"  only in one run: {len(m['only_in_a'])} / {len(m['only_in_b'])}")
    return "\n".join(lines)
