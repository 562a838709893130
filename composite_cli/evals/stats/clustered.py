"""Intervals for a mean when the rows come in clusters: repeats of one eval case are correlated,
so k repeats of n cases carry less information than n * k independent rows."""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence

from composite_cli.evals.stats.binomial import _as_pass_fail, wilson_from_rate
from composite_cli.evals.stats.bootstrap import _percentile_interval
from composite_cli.evals.stats.common import _check_iterations, _check_level, _finite_floats, _z


def _grouped(values: Sequence[float], clusters: Sequence[Hashable]) -> list[list[float]]:
    """The values of each cluster, clusters in order of first appearance."""
    if len(values) != len(clusters):
        raise ValueError(f"need one cluster per value, got {len(values)} values and {len(clusters)} clusters")
    xs = _finite_floats(values, "values")
    groups: dict[Hashable, list[float]] = {}
    for x, c in zip(xs, clusters, strict=True):
        groups.setdefault(c, []).append(x)
    return list(groups.values())


def clustered_standard_error(values: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """Cluster-robust standard error of the mean (the "sandwich" estimator for a mean)::

        SE^2 = C / (C - 1) * sum_c (sum_{i in c} (x_i - mean))^2 / n^2

    with ``n`` values in ``C`` clusters.  Residuals of one cluster are summed before squaring, so
    correlated values in a cluster count as the one observation they nearly are.  With one value
    per cluster it is the usual ``s / sqrt(n)`` (sample standard deviation, n - 1).  Fewer than
    two clusters give NaN (nothing to estimate a spread from).

    References: inspect_ai's ``stderr(cluster=...)`` (the same estimator with the C / (C - 1)
    finite-cluster correction); E. Miller (2024), "Adding Error Bars to Evals: A Statistical
    Approach to Language Model Evaluations", arXiv:2411.00640, appendix A; A. C. Cameron,
    D. L. Miller (2015), "A Practitioner's Guide to Cluster-Robust Inference", J. Human
    Resources 50:317-372.
    """
    groups = _grouped(values, clusters)
    n = sum(len(g) for g in groups)
    c = len(groups)
    if c < 2:
        return math.nan
    mean = math.fsum(x for g in groups for x in g) / n
    meat = math.fsum(math.fsum(x - mean for x in g) ** 2 for g in groups)
    return math.sqrt(meat * c / (c - 1)) / n


def design_effect(values: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """How many times larger the variance of the mean is, given the clusters, than if every
    value were independent: ``clustered_standard_error^2 / (s^2 / n)``, kept between 1 (no
    correlation found; never narrower than the naive interval) and ``n / C`` (the values of a
    cluster are copies: C observations).  Exactly 1 with one value per cluster.  When every
    value is the same nothing shows how correlated they are, and the result is ``n / C``.

    Reference: L. Kish (1965), "Survey Sampling", Wiley, sec. 8.2 (the design effect).
    """
    groups = _grouped(values, clusters)
    n = sum(len(g) for g in groups)
    c = len(groups)
    if c == 0 or c == n:
        return 1.0
    most = n / c
    if c < 2:
        return most
    mean = math.fsum(x for g in groups for x in g) / n
    naive = math.fsum((x - mean) ** 2 for g in groups for x in g) / (n * (n - 1))
    if naive == 0.0:
        return most
    clustered = clustered_standard_error(values, clusters) ** 2
    return min(most, max(1.0, clustered / naive))


def clustered_wilson_interval(
    passed: Sequence[bool] | Sequence[int], clusters: Sequence[Hashable], level: float = 0.95
) -> tuple[float, float]:
    """Wilson interval for a pass rate whose rows come in clusters (an eval case's repeats).

    The Wilson score interval (:func:`wilson_interval`) computed with the effective sample
    size ``n / deff`` instead of ``n``, ``deff`` the :func:`design_effect` of the clusters:
    between C (repeats of a case always agree) and n (repeats look independent).  With one
    row per cluster it is exactly :func:`wilson_interval`.  No rows give ``(0.0, 1.0)``.

    Reference: E. L. Korn, B. I. Graubard (1998), "Confidence Intervals for Proportions With
    Small Expected Number of Positive Counts Estimated From Survey Data", Survey Methodology
    24:193-201 (the Wilson interval with an effective sample size).
    """
    _check_level(level)
    xs = [1.0 if v else 0.0 for v in _as_pass_fail(passed, "passed")]
    if not xs:
        return (0.0, 1.0)
    n_eff = len(xs) / design_effect(xs, clusters)
    return wilson_from_rate(sum(xs) / len(xs), n_eff, _z(level))


def cluster_bootstrap_mean_ci(
    values: Sequence[float],
    clusters: Sequence[Hashable],
    level: float = 0.95,
    iterations: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean that resamples whole clusters (cases), each
    with all its rows, and takes the mean over the rows drawn.  With one value per cluster it
    draws the same resamples as :func:`bootstrap_mean_ci` for the same seed and gives the same
    interval.  Empty input gives ``(nan, nan)``; the bounds are clipped to the values' range.

    Reference: A. C. Davison, D. V. Hinkley (1997), "Bootstrap Methods and their Application",
    sec. 3.8 (resampling the top stage of hierarchical data).
    """
    _check_level(level)
    _check_iterations(iterations)
    groups = _grouped(values, clusters)
    if not groups:
        return (math.nan, math.nan)
    flat = [x for g in groups for x in g]
    if len(flat) == 1:
        return (flat[0], flat[0])
    sums = [math.fsum(g) for g in groups]
    sizes = [len(g) for g in groups]
    rng = random.Random(seed)
    c = len(groups)
    means = []
    for _ in range(iterations):
        picks = rng.choices(range(c), k=c)
        means.append(math.fsum(sums[i] for i in picks) / sum(sizes[i] for i in picks))
    means.sort()
    low, high = _percentile_interval(means, level)
    lo_clip, hi_clip = min(flat), max(flat)
    return (min(max(low, lo_clip), hi_clip), min(max(high, lo_clip), hi_clip))
