"""Shared pieces of the statistics: the paired result, argument checks, normal quantiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from composite_cli.percentiles import finite_floats as _finite_floats


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


def separable(p: float | None, alpha: float = 0.05) -> bool:
    """True when ``p`` is strictly below ``alpha``; None or NaN is never separable."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return p is not None and not math.isnan(p) and p < alpha
