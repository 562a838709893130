"""Percentiles by linear interpolation, for every layer that summarises latencies or scores.

A leaf (standard library only): the trace queries (the TUI dashboard) and the eval statistics
(`composite_cli.evals.stats`, which re-exports `percentile`) share this one definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def finite_floats(values: Sequence[float], name: str) -> list[float]:
    """The values as floats; ValueError naming `name` if one is NaN or infinite."""
    out = [float(v) for v in values]
    for v in out:
        if not math.isfinite(v):
            raise ValueError(f"{name} contains a non-finite value ({v!r})")
    return out


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
    xs = sorted(finite_floats(values, "values"))
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
