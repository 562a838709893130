"""pass@k and pass^k, the Pareto front, and verdicts in plain words."""

from __future__ import annotations

import math
from collections.abc import Mapping

from composite_cli.evals.stats.common import PairedResult, _is_unknown


def _check_nck(n: int, c: int, k: int) -> None:
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n (the estimator needs at least k samples), got k={k}, n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: chance that at least one of k tries passes.

    From ``n`` samples of which ``c`` passed::

        pass@k = 1 - C(n - c, k) / C(n, k)

    i.e. one minus the chance that k samples drawn without replacement from the n are
    all failures.  Computed exactly with integers (then rounded once), so there is no
    cancellation.  Requires ``1 <= k <= n``.

    Reference: M. Chen et al. (2021), "Evaluating Large Language Models Trained on
    Code", arXiv:2107.03374, eq. (1).
    """
    _check_nck(n, c, k)
    total = math.comb(n, k)
    return (total - math.comb(n - c, k)) / total


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k: chance that k independent tries *all* pass.

    From ``n`` samples of which ``c`` passed::

        pass^k = C(c, k) / C(n, k)

    the chance that k samples drawn without replacement from the n are all passes;
    unbiased for ``p ** k`` where p is the per-try pass rate.  Requires ``1 <= k <= n``.

    Reference: S. Yao, N. Shinn, P. Razavi, K. Narasimhan (2024), "tau-bench: A
    Benchmark for Tool-Agent-User Interaction in Real-World Domains", arXiv:2406.12045.
    """
    _check_nck(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


# ----------------------------------------------------------------------------- pareto


def pareto_front(
    points: Mapping[str, tuple[float | None, float | None]],
    *,
    maximize_first: bool = True,
    minimize_second: bool = True,
) -> list[str]:
    """Names of the points no other point dominates, in the mapping's order.

    Each point is ``(quality, cost)`` (cost may be money, latency, tokens...).  ``p``
    dominates ``q`` when ``p`` is at least as good as ``q`` on both coordinates and
    strictly better on at least one ("better" = higher quality if ``maximize_first``,
    lower cost if ``minimize_second``).  Identical points do not dominate each other,
    so ties all stay on the front.

    Unknown values (None or NaN, e.g. a provider that reports no cost): a point with an
    unknown coordinate never dominates anything, and is never dominated either, since
    neither claim can be shown; it is kept on the front so it is not silently hidden.

    Reference: V. Pareto (1906); see K. Deb (2001), "Multi-Objective Optimization using
    Evolutionary Algorithms", Wiley, sec. 2.4 (dominance).
    """

    def oriented(point: tuple[float | None, float | None]) -> tuple[float, float] | None:
        first, second = point
        if _is_unknown(first) or _is_unknown(second):
            return None
        assert first is not None and second is not None
        # Oriented so that larger is better on both coordinates.
        return (
            first if maximize_first else -first,
            -second if minimize_second else second,
        )

    known = {name: oriented(point) for name, point in points.items()}

    def dominates(p: tuple[float, float], q: tuple[float, float]) -> bool:
        return p[0] >= q[0] and p[1] >= q[1] and (p[0] > q[0] or p[1] > q[1])

    front = []
    for name, q in known.items():
        if q is None or not any(
            p is not None and other != name and dominates(p, q) for other, p in known.items()
        ):
            front.append(name)
    return front


# ---------------------------------------------------------------------------- verdict


def _format_p(p: float, alpha: float) -> str:
    """p=0.61, p=0.049, p<0.001; never rounds across ``alpha``."""
    if p < 0.001:
        return "p<0.001"
    decimals = 2 if p >= 0.1 else 3
    while decimals < 6 and (float(f"{p:.{decimals}f}") < alpha) != (p < alpha):
        decimals += 1
    return f"p={p:.{decimals}f}"


def _format_number(x: float, decimals: int) -> str:
    return f"{round(x, decimals) + 0.0:.{decimals}f}"  # + 0.0 turns -0.0 into 0.0


def _format_level(level: float) -> str:
    return f"{level * 100:g}%"


def verdict(
    name_a: str,
    name_b: str,
    result: PairedResult,
    alpha: float = 0.05,
    *,
    percent: bool = False,
    higher_is_better: bool = True,
    better: str = "better",
    unit: str = "",
    p_note: str = "",
) -> str:
    """One plain-English sentence comparing two modes from a :class:`PairedResult`.

    ``result`` must be for ``name_a - name_b``.  A winner is named only when
    :meth:`PairedResult.is_separable` holds (``p < alpha`` *and* the confidence interval
    excludes zero on the same side as the estimate), so the sentence never contradicts
    its own numbers; otherwise it says the data cannot separate them.

    * ``percent=True`` (pass/fail data): ``diff``/``low``/``high`` are proportions and are shown as
      percentage points with one decimal ("12.0 points").  Otherwise they are shown in
      their own units with three significant digits of the largest magnitude, followed
      by ``unit`` if given ("by 120 ms").
    * ``higher_is_better=False`` for costs and latencies; ``better`` is the comparative
      to use ("faster", "cheaper").
    * ``p_note`` follows the p-value, e.g. "Holm-adjusted over 3 comparisons" when
      ``result.p`` is an adjusted p-value ("p=0.030, Holm-adjusted over 3 comparisons").

    Examples::

        moa-v1 is better than direct by 12.0 points (95% CI 4.1 to 19.9, p=0.003)
        The data cannot separate moa-v1 and direct (difference 2.0 points, 95% CI -5.1 to 9.1, p=0.61)

    When the winner is ``name_b`` the magnitude and interval are flipped to be positive
    (winner minus loser).  The "difference" in the second form is ``name_a - name_b``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    diff, low, high = result.diff, result.low, result.high
    if not all(math.isfinite(v) for v in (diff, low, high)):
        return f"The data cannot separate {name_a} and {name_b} (no paired items to compare)"

    if percent:
        diff, low, high = diff * 100.0, low * 100.0, high * 100.0
        decimals = 1
        suffix = " points"
    else:
        largest = max(abs(diff), abs(low), abs(high))
        decimals = 1 if largest == 0 else min(6, max(0, 2 - math.floor(math.log10(largest))))
        suffix = f" {unit}" if unit else ""

    def fmt(x: float) -> str:
        return _format_number(x, decimals)

    ci = _format_level(result.level) + " CI"
    p_text = _format_p(result.p, alpha) + (f", {p_note}" if p_note else "")
    if result.is_separable(alpha):
        a_wins = (diff > 0) == higher_is_better
        winner, loser = (name_a, name_b) if a_wins else (name_b, name_a)
        mag, lo, hi = (diff, low, high) if diff > 0 else (-diff, -high, -low)
        return (
            f"{winner} is {better} than {loser} by {fmt(mag)}{suffix} ({ci} {fmt(lo)} to {fmt(hi)}, {p_text})"
        )
    return (
        f"The data cannot separate {name_a} and {name_b} "
        f"(difference {fmt(diff)}{suffix}, {ci} {fmt(low)} to {fmt(high)}, {p_text})"
    )


# ---------------------------------------------------------------------------- partial runs


def partial_note(
    mode: str, partial: int, runs: int, stopped_by: Mapping[str, int] | None = None
) -> str | None:
    """A sentence for runs a cap stopped early (their best answer so far was scored), or None.

    Examples::

        3 of 5 moa-v1 runs were partial (stopped by max_iterations (10))
        5 of 5 rlm-v1 runs were partial (stopped by max_iterations (10): 3, deadline of 600s: 2)
    """
    if partial <= 0:
        return None
    text = f"{partial} of {runs} {mode} runs were partial"
    reasons = {reason: count for reason, count in (stopped_by or {}).items() if count > 0}
    if len(reasons) == 1 and next(iter(reasons.values())) == partial:
        text += f" (stopped by {next(iter(reasons))})"
    elif reasons:
        text += " (stopped by " + ", ".join(f"{reason}: {count}" for reason, count in reasons.items()) + ")"
    return text
