"""Pass/fail statistics: the Wilson interval, exact McNemar and sign tests, paired proportions."""

from __future__ import annotations

import math
from collections.abc import Sequence

from composite_cli.evals.stats.common import (
    PairedResult,
    _check_level,
    _paired_diffs,
    _z,
)

# Exact integer arithmetic up to this many discordant pairs; a floating-point sum beyond.
_EXACT_BINOMIAL_MAX_N = 20_000


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
    return wilson_from_rate(successes / n, n, z)


def wilson_from_rate(p_hat: float, n: float, z: float) -> tuple[float, float]:
    """The Wilson interval for an observed rate ``p_hat`` over ``n`` trials, where ``n`` may be
    an effective sample size (a float, as from a design effect); ``z`` is the normal quantile.
    At ``p_hat`` 0 the lower bound is exactly 0, at 1 the upper bound exactly 1."""
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p_hat + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p_hat * (1.0 - p_hat) / n + z2 / (4.0 * n * n))
    low = 0.0 if p_hat == 0.0 else max(0.0, centre - half)
    high = 1.0 if p_hat == 1.0 else min(1.0, centre + half)
    return (low, high)


# ----------------------------------------------------------------------- percentiles


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
