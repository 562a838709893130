"""Statistics for comparing modes on eval sets.

Pure functions, standard library only (``math``, ``random``, ``statistics``), so that
``composite eval`` can report numbers a researcher can check by hand.

Conventions used throughout:

* ``level`` is a two-sided confidence level strictly between 0 and 1 (0.95 = 95% CI).
* Two-sided normal quantiles come from :class:`statistics.NormalDist`.
* Paired comparisons are always ``a - b``: a positive difference means the first
  argument scored higher.
* Bootstrap functions draw from their own ``random.Random(seed)``, so a given seed gives
  the same answer on every run of the same Python version (the global RNG is untouched).
* Inputs that would make the answer meaningless (NaN or infinite values, mismatched
  pair lengths, counts outside their range) raise :class:`ValueError` rather than
  returning a number nobody should trust.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "PairedResult",
    "bootstrap_mean_ci",
    "mcnemar_exact",
    "p50",
    "p95",
    "paired_bootstrap",
    "paired_proportion_diff",
    "pareto_front",
    "pass_at_k",
    "pass_hat_k",
    "percentile",
    "separable",
    "sign_test",
    "verdict",
    "wilson_interval",
]

# Above this many discordant pairs the exact binomial tail switches from exact integer
# arithmetic (about 30 ms at the threshold) to a floating-point sum in log space.
_EXACT_BINOMIAL_MAX_N = 20_000


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of two modes on the same items.

    ``diff`` is the estimated difference ``a - b`` (a proportion for pass/fail data,
    otherwise in the units of the scores), ``(low, high)`` its confidence interval at
    ``level``, and ``p`` the two-sided p-value for "no difference".  With no items,
    ``diff``, ``low`` and ``high`` are NaN and ``p`` is 1.0.
    """

    diff: float
    low: float
    high: float
    p: float
    level: float = 0.95

    def is_separable(self, alpha: float = 0.05) -> bool:
        """True when ``p < alpha`` *and* the interval excludes zero on the side of ``diff``.

        The p-value and the interval come from different procedures (exact McNemar vs
        Newcombe, or a bootstrap p vs percentile interval) and can disagree at the
        margin; requiring both keeps a reported winner consistent with every number
        printed next to it.  :func:`verdict` names a winner exactly when this is True.
        """
        excludes_zero = (self.diff > 0 and self.low > 0) or (self.diff < 0 and self.high < 0)
        return separable(self.p, alpha) and excludes_zero


# --------------------------------------------------------------------------- helpers


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")


def _z(level: float) -> float:
    """Two-sided standard normal quantile: z such that P(|Z| <= z) = level."""
    _check_level(level)
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _finite_floats(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    for v in out:
        if not math.isfinite(v):
            raise ValueError(f"{name} contains a non-finite value ({v!r})")
    return out


def _paired_diffs(a: Sequence[float], b: Sequence[float]) -> list[float]:
    if len(a) != len(b):
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    xs = _finite_floats(a, "a")
    ys = _finite_floats(b, "b")
    return [x - y for x, y in zip(xs, ys, strict=True)]


def _check_iterations(iterations: int) -> None:
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations!r}")


def _is_unknown(v: float | None) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _binom_half_lower_tail_exact(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), by exact integer arithmetic."""
    term = 1  # C(n, 0)
    total = 1
    for i in range(k):
        term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
        total += term
    return total / (1 << n)  # int / int is correctly rounded, even for huge n


def _binom_half_lower_tail_float(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), in floating point for large n.

    Sums the terms downward from i = k as multiples of the largest one,
    pmf(i - 1) / pmf(i) = i / (n - i + 1), and scales by pmf(k) computed with
    ``math.lgamma``.  Relative error is about 1e-15 * log(n!), i.e. ~1e-9 at n = 1e6.
    """
    log_pmf_k = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)
    total = 1.0
    term = 1.0
    for i in range(k, 0, -1):
        term *= i / (n - i + 1)
        total += term
        if term < 1e-17 * total:
            break
    return math.exp(log_pmf_k) * total


def _binom_half_two_sided(x: int, y: int) -> float:
    """Exact two-sided binomial test of x successes vs y failures with p = 1/2."""
    n = x + y
    if n == 0:
        return 1.0
    k = min(x, y)
    if n <= _EXACT_BINOMIAL_MAX_N:
        tail = _binom_half_lower_tail_exact(k, n)
    else:
        tail = _binom_half_lower_tail_float(k, n)
    return min(1.0, 2.0 * tail)


# ------------------------------------------------------------------ single proportion


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score confidence interval for a binomial proportion.

    The interval is the set of p for which the score test does not reject, i.e. the
    roots of ``|p_hat - p| = z * sqrt(p (1 - p) / n)``::

        centre = (p_hat + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p_hat (1 - p_hat) / n + z^2 / (4 n^2))
        (centre - half, centre + half)

    with ``p_hat = successes / n`` and ``z`` the two-sided normal quantile for
    ``level``.  Unlike the Wald interval it never leaves [0, 1] and does not collapse to
    a point at 0/n or n/n.  With ``n == 0`` nothing is known and the result is
    ``(0.0, 1.0)``.

    References: E. B. Wilson (1927), "Probable inference, the law of succession, and
    statistical inference", JASA 22:209-212; R. G. Newcombe (1998), "Two-sided
    confidence intervals for the single proportion: comparison of seven methods",
    Statistics in Medicine 17:857-872 (method 3; 81/263 gives 0.2553 to 0.3662).
    """
    z = _z(level)
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p_hat = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p_hat + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p_hat * (1.0 - p_hat) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


# ----------------------------------------------------------------------- percentiles


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0 <= q <= 100) by linear interpolation; None if empty.

    Same definition as ``numpy.percentile``'s default ``method="linear"`` (Hyndman &
    Fan 1996, definition 7; also R's default ``type = 7``): sort the values, take the
    virtual index ``h = (n - 1) * q / 100`` and interpolate between the order statistics
    at ``floor(h)`` and ``floor(h) + 1``.  The interpolation is written the way NumPy
    writes it (from the nearer end), so results agree to the last bit in practice.

    Reference: R. J. Hyndman, Y. Fan (1996), "Sample quantiles in statistical
    packages", The American Statistician 50:361-365.
    """
    if not 0.0 <= q <= 100.0:  # also rejects NaN
        raise ValueError(f"q must be between 0 and 100, got {q!r}")
    xs = sorted(_finite_floats(values, "values"))
    if not xs:
        return None
    virtual = (len(xs) - 1) * (q / 100.0)
    lo = math.floor(virtual)
    hi = min(lo + 1, len(xs) - 1)
    gamma = virtual - lo
    a, b = xs[lo], xs[hi]
    if gamma < 0.5:
        return a + (b - a) * gamma
    return b - (b - a) * (1.0 - gamma)


def p50(values: Sequence[float]) -> float | None:
    """Median (50th percentile, linear interpolation); None if empty."""
    return percentile(values, 50.0)


def p95(values: Sequence[float]) -> float | None:
    """95th percentile (linear interpolation, as ``numpy.percentile``); None if empty."""
    return percentile(values, 95.0)


# ------------------------------------------------------------------------- bootstrap


def _bootstrap_means(values: list[float], iterations: int, seed: int) -> list[float]:
    """Sorted means of ``iterations`` resamples (with replacement) of ``values``."""
    rng = random.Random(seed)
    n = len(values)
    means = [math.fsum(rng.choices(values, k=n)) / n for _ in range(iterations)]
    means.sort()
    return means


def _percentile_interval(sorted_stats: list[float], level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low = percentile(sorted_stats, tail)
    high = percentile(sorted_stats, 100.0 - tail)
    assert low is not None and high is not None
    return (low, high)


def bootstrap_mean_ci(
    values: Sequence[float], level: float = 0.95, iterations: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for the mean.

    Draws ``iterations`` resamples of size n with replacement, computes each resample's
    mean, and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of
    those means (linear interpolation, see :func:`percentile`).  Deterministic for a
    given ``seed`` (its own ``random.Random``).

    Edge cases: an empty sample has no mean, so the result is ``(nan, nan)`` (not
    ``(0, 1)``, which would be a fabricated interval for anything but proportions);
    a single value ``v`` gives ``(v, v)``.  The bounds are clipped to the sample's
    range so constant data gives exactly ``(v, v)`` despite rounding.

    The percentile interval is too narrow for small samples (roughly by a factor
    sqrt((n - 1) / n), and worse for skewed data); treat intervals from fewer than
    about 20 values as optimistic.

    Reference: B. Efron, R. J. Tibshirani (1993), "An Introduction to the Bootstrap",
    Chapman & Hall, chapter 13 (the percentile interval).
    """
    _check_level(level)
    _check_iterations(iterations)
    xs = _finite_floats(values, "values")
    if not xs:
        return (math.nan, math.nan)
    if len(xs) == 1:
        return (xs[0], xs[0])
    low, high = _percentile_interval(_bootstrap_means(xs, iterations, seed), level)
    lo_clip, hi_clip = min(xs), max(xs)
    return (min(max(low, lo_clip), hi_clip), min(max(high, lo_clip), hi_clip))


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    level: float = 0.95,
    iterations: int = 2000,
    seed: int = 0,
) -> PairedResult:
    """Mean paired difference ``a - b`` with a percentile bootstrap CI and p-value.

    ``a[i]`` and ``b[i]`` must be scores of the two modes on the same item i.  Items are
    resampled with replacement (keeping each pair together), ``iterations`` times; let
    ``d*`` be the mean difference of each resample.

    * ``diff`` is the observed mean of ``a[i] - b[i]``.
    * ``(low, high)`` are the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles
      of ``d*`` (percentile interval, Efron & Tibshirani 1993, ch. 13).
    * ``p`` inverts that interval (Efron & Tibshirani 1993, sec. 15.4): it is twice the
      smaller of the bootstrap proportions of ``d* <= 0`` and ``d* >= 0``, with the
      usual +1 Monte-Carlo correction so it is never 0 (Davison & Hinkley 1997,
      eq. 4.11)::

          p = min(1, 2 * (min(#{d* <= 0}, #{d* >= 0}) + 1) / (iterations + 1))

      so ``p < 1 - level`` goes with an interval that excludes zero.  Resample means are
      summed with ``math.fsum``, so a resample whose exact mean is 0 counts as a tie.
    * Small-sample guard: ``p`` is never below ``2 ** (1 - n)``, the smallest two-sided
      p-value an exact paired sign-flip (randomization) test can reach with n pairs.
      Without it, three items that all favour ``a`` would give p ~ 0.001; with it they
      give 0.25.  The guard only matters for n <= 10 at the default 2000 iterations.

    With no pairs, ``diff``, ``low`` and ``high`` are NaN and ``p`` is 1.0.  Like any
    percentile bootstrap, the interval is optimistic for small n (fewer than ~20 pairs);
    prefer :func:`sign_test` or, for pass/fail data, :func:`paired_proportion_diff`.

    References: B. Efron, R. J. Tibshirani (1993), "An Introduction to the Bootstrap";
    A. C. Davison, D. V. Hinkley (1997), "Bootstrap Methods and their Application";
    T. Berg-Kirkpatrick, D. Burkett, D. Klein (2012), "An Empirical Investigation of
    Statistical Significance in NLP", EMNLP.
    """
    _check_level(level)
    _check_iterations(iterations)
    diffs = _paired_diffs(a, b)
    n = len(diffs)
    if n == 0:
        return PairedResult(math.nan, math.nan, math.nan, 1.0, level)
    diff = math.fsum(diffs) / n
    means = _bootstrap_means(diffs, iterations, seed)
    low, high = _percentile_interval(means, level)
    n_le = sum(1 for m in means if m <= 0.0)
    n_ge = sum(1 for m in means if m >= 0.0)
    p = min(1.0, 2.0 * (min(n_le, n_ge) + 1) / (iterations + 1))
    p = max(p, min(1.0, 2.0 ** (1 - n)))
    return PairedResult(diff, low, high, p, level)


# ------------------------------------------------------------------ exact paired tests


def mcnemar_exact(b: int, c: int) -> float:
    """Exact (conditional) two-sided McNemar p-value.

    ``b`` and ``c`` are the discordant pair counts (items only the first mode passed,
    items only the second passed).  Under the null hypothesis each discordant pair is
    equally likely to go either way, so ``b ~ Binomial(b + c, 1/2)`` and::

        p = min(1, 2 * sum_{i=0}^{min(b, c)} C(b + c, i) / 2^(b + c))

    ``b + c == 0`` gives 1.0.  Computed with exact integer arithmetic up to 20,000
    discordant pairs and with a log-space floating-point sum beyond that.  Note this
    exact test is conservative; Fagerland et al. (2013) recommend the mid-p variant.

    References: Q. McNemar (1947), Psychometrika 12:153-157; M. W. Fagerland,
    S. Lydersen, P. Laake (2013), "The McNemar test for binary matched-pairs data:
    mid-p and asymptotic are better than exact conditional", BMC Medical Research
    Methodology 13:91 (their example b=6, c=16 gives p = 0.052479).
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    return _binom_half_two_sided(b, c)


def sign_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided sign test on paired differences ``a[i] - b[i]``.

    Counts positive and negative differences, drops ties (zero differences), and applies
    the exact binomial test with p = 1/2 to the remaining counts; this is the same
    computation as :func:`mcnemar_exact` on (#positive, #negative).  No ties left
    (all pairs tied, or no pairs) gives 1.0.

    Reference: W. J. Conover (1999), "Practical Nonparametric Statistics", 3rd ed.,
    Wiley, section 3.4 (the sign test).
    """
    diffs = _paired_diffs(a, b)
    positive = sum(1 for d in diffs if d > 0)
    negative = sum(1 for d in diffs if d < 0)
    return _binom_half_two_sided(positive, negative)


def _as_pass_fail(values: Sequence[bool] | Sequence[int], name: str) -> list[bool]:
    out = []
    for v in values:
        if v not in (0, 1):  # True == 1 and False == 0; rejects 0.5, None, NaN
            raise ValueError(f"{name} must contain only pass/fail values (bool or 0/1), got {v!r}")
        out.append(bool(v))
    return out


def paired_proportion_diff(
    a: Sequence[bool] | Sequence[int], b: Sequence[bool] | Sequence[int], level: float = 0.95
) -> PairedResult:
    """Difference in pass rate ``p_a - p_b`` on the same items, with Newcombe's interval.

    With ``n11`` items both pass, ``n10`` only ``a`` passes, ``n01`` only ``b`` passes,
    ``n00`` both fail: ``diff = (n10 - n01) / n``.  The interval is Newcombe's hybrid
    score ("square-and-add") method 10 for paired proportions: take the Wilson intervals
    ``(l1, u1)`` for ``p_a`` and ``(l2, u2)`` for ``p_b`` and combine them with a
    correlation estimate ``phi``::

        low  = diff - sqrt((p_a - l1)^2 - 2 phi (p_a - l1)(u2 - p_b) + (u2 - p_b)^2)
        high = diff + sqrt((p_b - l2)^2 - 2 phi (p_b - l2)(u1 - p_a) + (u1 - p_a)^2)

    where, with ``A = n11 n00 - n10 n01`` and ``M`` the product of the four marginal
    totals, ``phi = (A - n/2) / sqrt(M)`` if ``A > n/2``, ``0`` if ``0 <= A <= n/2``,
    ``A / sqrt(M)`` if ``A < 0``, and ``0`` if any marginal total is zero.  This is the
    interval recommended by Fagerland, Lydersen & Laake (2014); it stays inside
    [-1, 1] and behaves well with few discordant pairs.  ``p`` is the exact McNemar
    p-value (:func:`mcnemar_exact` on ``n10, n01``).  With no items the result is NaN
    with ``p = 1.0``.

    References: R. G. Newcombe (1998), "Improved confidence intervals for the difference
    between binomial proportions based on paired data", Statistics in Medicine
    17:2635-2650; M. W. Fagerland, S. Lydersen, P. Laake (2014), "Recommended tests and
    confidence intervals for paired binomial proportions", Statistics in Medicine
    33:2850-2875, and their book "Statistical Analysis of Contingency Tables" (2017),
    ch. 8 (Cavo et al. example: 59/6/16/80 gives -0.0621, 95% CI -0.1186 to -0.0046).
    """
    _check_level(level)
    if len(a) != len(b):
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    xs = _as_pass_fail(a, "a")
    ys = _as_pass_fail(b, "b")
    n = len(xs)
    if n == 0:
        return PairedResult(math.nan, math.nan, math.nan, 1.0, level)
    n11 = sum(1 for x, y in zip(xs, ys, strict=True) if x and y)
    n10 = sum(1 for x, y in zip(xs, ys, strict=True) if x and not y)
    n01 = sum(1 for x, y in zip(xs, ys, strict=True) if y and not x)
    n00 = n - n11 - n10 - n01

    pass_a, pass_b = n11 + n10, n11 + n01
    p_a, p_b = pass_a / n, pass_b / n
    diff = (n10 - n01) / n
    l1, u1 = wilson_interval(pass_a, n, level)
    l2, u2 = wilson_interval(pass_b, n, level)

    margins = pass_a * (n - pass_a) * pass_b * (n - pass_b)
    assoc = n11 * n00 - n10 * n01
    if margins == 0:
        phi = 0.0
    elif assoc > n / 2:
        phi = (assoc - n / 2) / math.sqrt(margins)
    elif assoc >= 0:
        phi = 0.0
    else:
        phi = assoc / math.sqrt(margins)

    dl1, du1 = p_a - l1, u1 - p_a
    dl2, du2 = p_b - l2, u2 - p_b
    low = diff - math.sqrt(max(0.0, dl1 * dl1 - 2.0 * phi * dl1 * du2 + du2 * du2))
    high = diff + math.sqrt(max(0.0, dl2 * dl2 - 2.0 * phi * dl2 * du1 + du1 * du1))
    return PairedResult(diff, max(-1.0, low), min(1.0, high), mcnemar_exact(n10, n01), level)


# ---------------------------------------------------------------------- pass@k family


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


def separable(p: float | None, alpha: float = 0.05) -> bool:
    """True when ``p`` is strictly below ``alpha``; None or NaN is never separable."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return p is not None and not math.isnan(p) and p < alpha


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
    p_text = _format_p(result.p, alpha)
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
