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
* Rows that come in clusters (the repeats of one eval case) get intervals that account for
  it (``clustered.py``); many pairwise comparisons get Holm-adjusted p-values and a pair the
  data cannot separate gets a power estimate (``power.py``).
* Inputs that would make the answer meaningless (NaN or infinite values, mismatched
  pair lengths, counts outside their range) raise :class:`ValueError` rather than
  returning a number nobody should trust.
"""

from composite_cli.evals.stats.binomial import (
    mcnemar_exact,
    paired_proportion_diff,
    sign_test,
    wilson_interval,
)
from composite_cli.evals.stats.bootstrap import bootstrap_mean_ci, p50, p95, paired_bootstrap, percentile
from composite_cli.evals.stats.clustered import (
    cluster_bootstrap_mean_ci,
    clustered_standard_error,
    clustered_wilson_interval,
    design_effect,
)
from composite_cli.evals.stats.common import PairedResult, separable
from composite_cli.evals.stats.power import holm_adjust, mcnemar_cases_needed, paired_cases_needed
from composite_cli.evals.stats.summary import pareto_front, pass_at_k, pass_hat_k, verdict

__all__ = [
    "PairedResult",
    "bootstrap_mean_ci",
    "cluster_bootstrap_mean_ci",
    "clustered_standard_error",
    "clustered_wilson_interval",
    "design_effect",
    "holm_adjust",
    "mcnemar_cases_needed",
    "mcnemar_exact",
    "p50",
    "p95",
    "paired_bootstrap",
    "paired_cases_needed",
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
