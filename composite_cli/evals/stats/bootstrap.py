"""Percentiles and bootstrap intervals for graded scores and paired differences."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from composite_cli.evals.stats.common import (
    PairedResult,
    _check_iterations,
    _check_level,
    _finite_floats,
    _paired_diffs,
)
from composite_cli.percentiles import percentile


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
