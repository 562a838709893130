"""Many comparisons and too few cases: Holm's adjustment of a family of p-values, and how many
cases a paired test would need to detect a difference of a given size."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from statistics import NormalDist

from composite_cli.evals.stats.common import _finite_floats

# The fewest non-tied pairs with which an exact two-sided sign test (McNemar's, or the paired
# bootstrap's sign-flip floor 2 ** (1 - n)) can reach p < alpha: 2 * 0.5 ** m < alpha.


def _fewest_pairs(alpha: float) -> int:
    m = 1
    while 2.0 * 0.5**m >= alpha:
        m += 1
    return m


def _check(alpha: float, power: float) -> tuple[float, float]:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be strictly between 0 and 1, got {power!r}")
    normal = NormalDist()
    return normal.inv_cdf(1.0 - alpha / 2.0), normal.inv_cdf(power)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``m`` p-values, returned in the input's order.

    Sort the p-values ascending, ``p_(1) <= ... <= p_(m)``; the adjusted value of ``p_(i)`` is
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``.  Rejecting every hypothesis whose adjusted
    p-value is below ``alpha`` controls the family-wise error rate at ``alpha`` (the chance of
    naming any winner wrongly), under any dependence between the tests.  One p-value is left as
    it is.

    Reference: S. Holm (1979), "A Simple Sequentially Rejective Multiple Test Procedure",
    Scandinavian Journal of Statistics 6:65-70.
    """
    ps = _finite_floats(p_values, "p_values")
    if any(not 0.0 <= p <= 1.0 for p in ps):
        raise ValueError(f"p-values must be between 0 and 1, got {ps!r}")
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def mcnemar_cases_needed(only_a: float, only_b: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Cases a McNemar test needs to detect ``p10 - p01`` with the given power (two-sided).

    ``only_a`` and ``only_b`` are the proportions of cases only the first (``p10``) and only the
    second (``p01``) mode passed.  Connor's normal-approximation formula, with
    ``psi = p10 + p01`` and ``delta = p10 - p01``::

        n = (z_{1 - alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2

    rounded up, and never fewer than the cases that give the exact test enough discordant pairs
    to reach ``alpha`` at all (6 at 0.05: ``ceil(6 / psi)``).  ``None`` when ``delta`` is 0: no
    number of cases detects a difference of size zero.

    Reference: R. J. Connor (1987), "Sample Size for Testing Differences in Proportions for the
    Paired-Sample Design", Biometrics 43:207-211 (p10 = 0.25, p01 = 0.10 gives 120).
    """
    z_a, z_b = _check(alpha, power)
    for name, value in (("only_a", only_a), ("only_b", only_b)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a proportion between 0 and 1, got {value!r}")
    psi, delta = only_a + only_b, only_a - only_b
    if psi > 1.0:
        raise ValueError(f"only_a + only_b must be at most 1, got {psi!r}")
    if delta == 0.0:
        return None
    n = (z_a * math.sqrt(psi) + z_b * math.sqrt(max(0.0, psi - delta * delta))) ** 2 / (delta * delta)
    return max(math.ceil(n - 1e-9), math.ceil(_fewest_pairs(alpha) / psi - 1e-9))


def paired_cases_needed(diffs: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Cases a paired test of the mean difference needs to detect the observed mean of ``diffs``
    (per-case differences ``a - b``) with the given power, two-sided.

    The normal approximation with Guenther's correction for the t distribution, ``d`` the
    observed mean and ``s`` the standard deviation of the differences (n - 1)::

        n = ((z_{1 - alpha/2} + z_{power}) * s / d)^2 + z_{1 - alpha/2}^2 / 2

    rounded up, and never fewer than the pairs a sign-flip test needs to reach ``alpha`` at all
    (6 at 0.05), the floor :func:`paired_bootstrap` puts on its p-value.  ``None`` when the mean
    difference is 0 or there are fewer than two differences (no spread to size the test on).

    Reference: W. C. Guenther (1981), "Sample Size Formulas for Normal Theory T Tests", The
    American Statistician 35:243-244 (d = 0.5 s gives 34).
    """
    z_a, z_b = _check(alpha, power)
    ds = _finite_floats(diffs, "diffs")
    if len(ds) < 2:
        return None
    mean = math.fsum(ds) / len(ds)
    if mean == 0.0:
        return None
    sd = statistics.stdev(ds)
    n = ((z_a + z_b) * sd / mean) ** 2 + z_a * z_a / 2.0
    return max(math.ceil(n - 1e-9), _fewest_pairs(alpha))
