"""Statistics for `composite eval`, checked against published or independently computed values.

Every reference value here comes from somewhere other than the code under test: a paper or
textbook example (cited next to it), exact rational arithmetic, brute-force enumeration, a
different closed form, or NumPy (used only as a reference; the module itself does not use it).
"""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction
from statistics import NormalDist, fmean, stdev

import numpy as np
import pytest

from composite_cli.evals.stats import (
    PairedResult,
    binomial,
    bootstrap_mean_ci,
    mcnemar_exact,
    p50,
    p95,
    paired_bootstrap,
    paired_proportion_diff,
    pareto_front,
    pass_at_k,
    pass_hat_k,
    percentile,
    separable,
    sign_test,
    verdict,
    wilson_interval,
)

Z95 = 1.959963984540054  # two-sided 95% standard normal quantile (standard tables)


# ----------------------------------------------------------------------- Wilson interval


def wilson_by_quadratic(s: int, n: int, z: float) -> tuple[float, float]:
    """Roots of (n + z^2) p^2 - (2s + z^2) p + s^2/n = 0 (Agresti & Coull 1998, eq. 2),
    a different arrangement of the score-test inversion than the module uses."""
    root = z * math.sqrt(z * z + 4.0 * s * (n - s) / n)
    return ((2 * s + z * z - root) / (2 * (n + z * z)), (2 * s + z * z + root) / (2 * (n + z * z)))


@pytest.mark.parametrize(
    ("s", "n", "low", "high"),
    [
        # Newcombe (1998), Stat Med 17:857-872, Table II, method 3 (score, no CC).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_1998_table(s, n, low, high):
    got = wilson_interval(s, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_boundaries_0_of_10_and_10_of_10():
    # At s = 0 the upper bound is z^2 / (n + z^2); at s = n the lower is n / (n + z^2).
    upper0 = Z95**2 / (10 + Z95**2)
    assert upper0 == pytest.approx(0.27753, abs=1e-5)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(upper0, rel=1e-12))
    assert wilson_interval(10, 10) == (pytest.approx(1 - upper0, rel=1e-12), 1.0)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99])
def test_wilson_matches_independent_quadratic_form(level):
    z = NormalDist().inv_cdf(0.5 + level / 2)
    for n in (1, 2, 7, 30, 263, 1000):
        for s in range(n + 1) if n < 40 else (0, 1, n // 3, n // 2, n - 1, n):
            lo, hi = wilson_interval(s, n, level)
            ref_lo, ref_hi = wilson_by_quadratic(s, n, z)
            assert lo == pytest.approx(max(0.0, ref_lo), abs=1e-12)
            assert hi == pytest.approx(min(1.0, ref_hi), abs=1e-12)


def test_wilson_endpoints_solve_the_score_equation():
    # Defining property: |p_hat - p| = z sqrt(p (1 - p) / n) at both interior endpoints.
    s, n = 81, 263
    for p in wilson_interval(s, n):
        assert abs(s / n - p) == pytest.approx(Z95 * math.sqrt(p * (1 - p) / n), rel=1e-9)


def test_wilson_exact_coverage_is_near_nominal():
    # Coverage by exact enumeration of the binomial distribution (no simulation).
    n, p = 50, 0.3
    coverage = sum(
        math.comb(n, s) * p**s * (1 - p) ** (n - s)
        for s in range(n + 1)
        if wilson_interval(s, n)[0] <= p <= wilson_interval(s, n)[1]
    )
    assert 0.92 < coverage < 0.98


def test_wilson_no_data_and_invalid_input():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for bad in [(-1, 5), (6, 5), (0, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    for level in (0.0, 1.0, 1.5, math.nan):
        with pytest.raises(ValueError):
            wilson_interval(1, 5, level)


# ------------------------------------------------------------- McNemar and the sign test


def exact_two_sided_binomial_half(b: int, c: int) -> Fraction:
    """Sum of P(X = i) over every outcome at least as extreme as observed, |2i - n| >= |b - c|
    (the "alternative formulation" in Fagerland et al.'s reference code), in exact rationals."""
    n = b + c
    total = sum(
        (Fraction(math.comb(n, i), 2**n) for i in range(n + 1) if abs(2 * i - n) >= abs(b - c)), Fraction(0)
    )
    return min(Fraction(1), total)


def test_mcnemar_known_values():
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375, abs=0)  # 2 * 11 / 2^10, exactly
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0  # capped: the two tails overlap
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == 0.0625  # Altman et al. (2000) Table 6.2 discordant pairs: 2/32
    # Cavo et al. (2012) data, b=6, c=16: "McNemar exact conditional test: P = 0.052479"
    # (Fagerland, Lydersen & Laake 2013/2017; contingencytables R package test-ch8.R).
    assert mcnemar_exact(6, 16) == pytest.approx(0.052479, abs=5e-7)


def test_mcnemar_matches_exact_rational_arithmetic():
    for b in range(26):
        for c in range(26):
            assert mcnemar_exact(b, c) == pytest.approx(float(exact_two_sided_binomial_half(b, c)), rel=1e-15)


def test_mcnemar_float_path_agrees_with_exact_integers():
    for n in (1, 10, 101, 2_000, 19_999):
        for k in {0, 1, n // 10, n // 3, n // 2 - 1, n // 2}:
            if 0 <= k <= n // 2:
                exact = binomial._binom_half_lower_tail_exact(k, n)
                approx = binomial._binom_half_lower_tail_float(k, n)
                assert approx == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_mcnemar_large_n_matches_normal_approximation():
    # Beyond the exact-integer threshold: compare with the continuity-corrected normal
    # approximation, which is accurate to well under 1% at this size.
    n = 1_000_000
    for gap in (0, 500, 1000, 2000):
        b = n // 2 - gap
        c = n - b
        normal = min(1.0, 2 * NormalDist().cdf((b + 0.5 - n / 2) / math.sqrt(n / 4)))
        assert mcnemar_exact(b, c) == pytest.approx(normal, rel=5e-3)


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_sign_test_known_values_and_ties_dropped():
    # 9 positive, 1 negative, 3 ties: same as the binomial test on 9 vs 1.
    a = [5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 3, 3, 3]
    b = [1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 3, 3, 3]
    assert sign_test(a, b) == pytest.approx(0.021484375, abs=0)
    assert sign_test(b, a) == sign_test(a, b)
    # 10 of 10 in the same direction: 2 / 2^10 (Conover 1999, sec. 3.4 table of the binomial).
    assert sign_test([1.0] * 10, [0.0] * 10) == pytest.approx(2 / 1024, abs=0)
    assert sign_test([1, 2, 3], [1, 2, 3]) == 1.0  # all ties
    assert sign_test([], []) == 1.0


def test_sign_test_rejects_bad_input():
    with pytest.raises(ValueError):
        sign_test([1, 2], [1])
    with pytest.raises(ValueError):
        sign_test([1, math.nan], [0, 0])


# ----------------------------------------------------------------------- pass@k, pass^k


def brute_force(n: int, c: int, k: int) -> tuple[Fraction, Fraction]:
    """(P(at least one pass), P(all pass)) over every k-subset of n samples with c passes."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    any_pass = Fraction(sum(1 for s in subsets if any(s)), len(subsets))
    all_pass = Fraction(sum(1 for s in subsets if all(s)), len(subsets))
    return any_pass, all_pass


def test_pass_at_k_and_pass_hat_k_match_brute_force_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                any_pass, all_pass = brute_force(n, c, k)
                assert pass_at_k(n, c, k) == pytest.approx(float(any_pass), abs=1e-15)
                assert pass_hat_k(n, c, k) == pytest.approx(float(all_pass), abs=1e-15)


def test_pass_at_k_matches_codex_paper_numpy_formula():
    # Chen et al. (2021), Fig. 3: 1 - prod(1 - k / arange(n - c + 1, n + 1)).
    def codex(n: int, c: int, k: int) -> float:
        if n - c < k:
            return 1.0
        return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))

    for n, c, k in [(200, 37, 1), (200, 37, 10), (200, 37, 100), (100, 0, 5), (100, 99, 2), (10, 3, 8)]:
        assert pass_at_k(n, c, k) == pytest.approx(codex(n, c, k), rel=1e-12, abs=1e-15)


def test_pass_at_1_and_pass_hat_1_are_the_pass_rate():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_hat_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_estimators_are_unbiased():
    # E[estimator] over c ~ Binomial(n, p) equals 1 - (1 - p)^k and p^k exactly.
    n, p = 10, 0.3
    pmf = [math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)]
    for k in (1, 2, 5, 10):
        assert sum(w * pass_at_k(n, c, k) for c, w in enumerate(pmf)) == pytest.approx(1 - (1 - p) ** k)
        assert sum(w * pass_hat_k(n, c, k) for c, w in enumerate(pmf)) == pytest.approx(p**k)


def test_pass_at_k_known_small_values():
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_hat_k(5, 2, 2) == pytest.approx(0.1)  # C(2,2)/C(5,2) = 1/10
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than k failures: some pass is certain
    assert pass_hat_k(5, 5, 5) == 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_estimators_reject_invalid_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


# -------------------------------------------------------------------------- percentile


def test_percentile_matches_numpy_linear():
    rng = random.Random(7)
    qs = [0, 1, 2.5, 5, 10, 25, 33.3, 50, 66.7, 75, 90, 95, 97.5, 99, 100]
    for size in (1, 2, 3, 4, 5, 10, 17, 100):
        values = [rng.gauss(0, 10) for _ in range(size)]
        ints = [rng.randint(0, 20) for _ in range(size)]
        for q in qs:
            assert percentile(values, q) == pytest.approx(
                float(np.percentile(values, q)), rel=1e-15, abs=1e-15
            )
            assert percentile(ints, q) == pytest.approx(float(np.percentile(ints, q)), rel=1e-15, abs=1e-15)


def test_percentile_hand_values_and_helpers():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([3, 1, 2], 0) == 1.0
    assert percentile([3, 1, 2], 100) == 3.0
    assert percentile([10, 20], 95) == pytest.approx(19.5)
    assert p50([5, 1, 3]) == 3.0
    assert p95(list(range(1, 101))) == pytest.approx(95.05)  # numpy: 95.05
    assert percentile([], 50) is None
    assert p50([]) is None
    assert p95([]) is None


def test_percentile_rejects_bad_input():
    for q in (-1, 101, math.nan):
        with pytest.raises(ValueError):
            percentile([1, 2], q)
    with pytest.raises(ValueError):
        percentile([1, math.nan], 50)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_mean_ci_is_deterministic_for_a_seed():
    rng = random.Random(3)
    values = [rng.random() for _ in range(50)]
    assert bootstrap_mean_ci(values, seed=11) == bootstrap_mean_ci(values, seed=11)
    assert bootstrap_mean_ci(values, seed=11) != bootstrap_mean_ci(values, seed=12)


def test_bootstrap_mean_ci_does_not_touch_the_global_rng():
    random.seed(99)
    expected = random.random()
    random.seed(99)
    bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0])
    assert random.random() == expected


def test_bootstrap_mean_ci_covers_true_mean_and_matches_normal_theory():
    rng = random.Random(2024)
    values = [rng.gauss(10.0, 2.0) for _ in range(200)]
    low, high = bootstrap_mean_ci(values)
    assert low < 10.0 < high
    # For n = 200 normal data the percentile interval approximates mean +/- z * s / sqrt(n)
    # (Efron & Tibshirani 1993, ch. 13).
    half = Z95 * stdev(values) / math.sqrt(len(values))
    assert low == pytest.approx(fmean(values) - half, abs=0.1 * half)
    assert high == pytest.approx(fmean(values) + half, abs=0.1 * half)


def test_bootstrap_mean_ci_coverage_by_simulation():
    rng = random.Random(5)
    covered = 0
    trials = 100
    for trial in range(trials):
        values = [rng.gauss(3.0, 1.0) for _ in range(40)]
        low, high = bootstrap_mean_ci(values, iterations=400, seed=trial)
        covered += low <= 3.0 <= high
    assert 85 <= covered <= 100  # nominal 95; binomial sd ~2.2


def test_bootstrap_mean_ci_levels_nest():
    rng = random.Random(8)
    values = [rng.expovariate(1.0) for _ in range(60)]
    lo90, hi90 = bootstrap_mean_ci(values, level=0.90)
    lo99, hi99 = bootstrap_mean_ci(values, level=0.99)
    assert lo99 < lo90 < fmean(values) < hi90 < hi99


def test_bootstrap_mean_ci_edge_cases():
    low, high = bootstrap_mean_ci([])
    assert math.isnan(low) and math.isnan(high)
    assert bootstrap_mean_ci([4.2]) == (4.2, 4.2)
    assert bootstrap_mean_ci([0.1] * 7) == (0.1, 0.1)
    with pytest.raises(ValueError):
        bootstrap_mean_ci([1.0, math.inf])
    with pytest.raises(ValueError):
        bootstrap_mean_ci([1.0, 2.0], iterations=0)
    with pytest.raises(ValueError):
        bootstrap_mean_ci([1.0, 2.0], level=95)


def test_paired_bootstrap_ci_is_the_bootstrap_of_the_differences():
    rng = random.Random(1)
    a = [rng.random() for _ in range(80)]
    b = [x - 0.05 + rng.gauss(0, 0.2) for x in a]
    result = paired_bootstrap(a, b, seed=4)
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    assert result.diff == pytest.approx(fmean(diffs), rel=1e-12)
    assert (result.low, result.high) == pytest.approx(bootstrap_mean_ci(diffs, seed=4), rel=1e-12)
    assert result.level == 0.95
    assert paired_bootstrap(a, b, seed=4) == result  # deterministic


def test_paired_bootstrap_p_value_matches_paired_z_test_for_large_n():
    # For n = 400 the bootstrap distribution of the mean difference is close to normal, so
    # its two-sided p-value should be close to 2 * (1 - Phi(|t|)) from the paired t statistic.
    # The differences are shifted so that the t statistic is exactly 2.2 (normal p = 0.0278).
    rng = random.Random(31)
    a = [rng.gauss(0.0, 1.0) for _ in range(400)]
    noise = [rng.gauss(0.0, 1.0) for _ in range(400)]
    shift = 2.2 * stdev(noise) / math.sqrt(len(noise)) - fmean(noise)
    b = [x - (e + shift) for x, e in zip(a, noise, strict=True)]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    t = fmean(diffs) / (stdev(diffs) / math.sqrt(len(diffs)))
    assert t == pytest.approx(2.2)
    normal_p = 2 * (1 - NormalDist().cdf(abs(t)))
    result = paired_bootstrap(a, b, iterations=4000, seed=0)
    assert result.p == pytest.approx(normal_p, abs=0.02)
    half = Z95 * stdev(diffs) / math.sqrt(len(diffs))
    assert result.low == pytest.approx(fmean(diffs) - half, abs=0.1 * half)
    assert result.high == pytest.approx(fmean(diffs) + half, abs=0.1 * half)


def test_paired_bootstrap_identical_modes():
    scores = [0.2, 0.9, 0.5, 0.7, 0.1]
    assert paired_bootstrap(scores, scores) == PairedResult(0.0, 0.0, 0.0, 1.0, 0.95)


def test_paired_bootstrap_p_never_beats_an_exact_randomization_test():
    # Three items all favouring a: the best any exact paired test can do is 2 / 2^3.
    assert paired_bootstrap([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]).p == 0.25
    assert paired_bootstrap([1.0], [0.0]).p == 1.0
    # The floor binds up to n = 10 (2^-9 > 2/2001) and not from n = 11 (2^-10 < 2/2001).
    assert paired_bootstrap([1.0] * 10, [0.0] * 10).p == 2.0**-9
    assert paired_bootstrap([1.0] * 11, [0.0] * 11).p == pytest.approx(2 / 2001)
    # With many consistent items the floor no longer matters: 2 / (2000 + 1).
    assert paired_bootstrap([1.0] * 30, [0.0] * 30).p == pytest.approx(2 / 2001)


def test_paired_bootstrap_edge_cases():
    empty = paired_bootstrap([], [])
    assert math.isnan(empty.diff) and math.isnan(empty.low) and math.isnan(empty.high)
    assert empty.p == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, math.nan], [1.0, 2.0])


def test_paired_result_is_frozen():
    result = PairedResult(0.1, 0.0, 0.2, 0.04)
    with pytest.raises(AttributeError):
        result.p = 0.5  # type: ignore[misc]


# ----------------------------------------------------------- paired pass/fail difference


def table_to_pairs(n11: int, n10: int, n01: int, n00: int) -> tuple[list[bool], list[bool]]:
    a = [True] * n11 + [True] * n10 + [False] * n01 + [False] * n00
    b = [True] * n11 + [False] * n10 + [True] * n01 + [False] * n00
    return a, b


def test_paired_proportion_diff_matches_fagerland_cavo_example():
    # Cavo et al. (2012) complete response before/after consolidation therapy, table
    # [[59, 6], [16, 80]]. Fagerland, Lydersen & Laake (2017), ch. 8 (contingencytables
    # test-ch8.R): Newcombe square-and-add estimate -0.0621, 95% CI -0.1186 to -0.0046;
    # McNemar exact conditional P = 0.052479.
    a, b = table_to_pairs(59, 6, 16, 80)
    result = paired_proportion_diff(a, b)
    assert result.diff == pytest.approx(-0.0621, abs=5e-5)
    assert result.low == pytest.approx(-0.1186, abs=5e-5)
    assert result.high == pytest.approx(-0.0046, abs=5e-5)
    assert result.p == pytest.approx(0.052479, abs=5e-7)


def test_paired_proportion_diff_is_antisymmetric_and_contains_estimate():
    rng = random.Random(12)
    for _ in range(50):
        n = rng.randint(1, 60)
        a = [rng.random() < 0.6 for _ in range(n)]
        b = [rng.random() < 0.5 for _ in range(n)]
        ab = paired_proportion_diff(a, b)
        ba = paired_proportion_diff(b, a)
        assert ab.diff == pytest.approx(-ba.diff, abs=1e-15)
        assert (ab.low, ab.high) == pytest.approx((-ba.high, -ba.low), abs=1e-12)
        assert ab.p == ba.p
        assert -1.0 <= ab.low <= ab.diff <= ab.high <= 1.0


def test_paired_proportion_diff_accepts_0_1_and_handles_degenerate_tables():
    same = paired_proportion_diff([1, 0, 1, 1], [1, 0, 1, 1])
    assert same.diff == 0.0 and same.low < 0.0 < same.high and same.p == 1.0
    everything = paired_proportion_diff([True] * 5, [True] * 5)
    assert everything.diff == 0.0 and everything.low <= 0.0 <= everything.high
    empty = paired_proportion_diff([], [])
    assert math.isnan(empty.diff) and empty.p == 1.0


def test_paired_proportion_diff_rejects_non_binary_values():
    with pytest.raises(ValueError):
        paired_proportion_diff([0.5, 1.0], [1.0, 0.0])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        paired_proportion_diff([True], [True, False])


# ------------------------------------------------------------------------------ pareto


def test_pareto_front_basic():
    points = {
        "direct": (0.60, 1.0),
        "moa": (0.75, 5.0),
        "think": (0.70, 5.0),  # dominated by moa: same cost, lower quality
        "refine": (0.55, 2.0),  # dominated by direct: worse on both
        "rlm": (0.80, 9.0),
    }
    assert pareto_front(points) == ["direct", "moa", "rlm"]


def test_pareto_front_ties_stay_on_the_front():
    points = {"a": (0.7, 2.0), "b": (0.7, 2.0), "c": (0.7, 3.0), "d": (0.6, 2.0)}
    assert pareto_front(points) == ["a", "b"]


def test_pareto_front_unknown_costs_never_dominate_and_are_kept():
    points = {
        "cheap": (0.5, 1.0),
        "unknown": (0.9, None),  # would dominate everything if its cost were low
        "nan-cost": (0.4, math.nan),
        "pricey": (0.6, 4.0),
        "no-quality": (None, 0.5),
    }
    assert pareto_front(points) == ["cheap", "unknown", "nan-cost", "pricey", "no-quality"]
    assert pareto_front({"a": (0.5, 1.0), "b": (0.9, None), "c": (0.4, 2.0)}) == ["a", "b"]


def test_pareto_front_directions():
    points = {"fast-bad": (0.2, 10.0), "slow-good": (0.9, 100.0), "slow-bad": (0.2, 100.0)}
    assert pareto_front(points) == ["fast-bad", "slow-good"]
    # Minimize the first coordinate (e.g. error rate) and maximize the second (throughput).
    assert pareto_front(points, maximize_first=False, minimize_second=False) == ["slow-bad"]
    assert pareto_front({}) == []


# ----------------------------------------------------------------------------- verdict


def test_separable():
    assert separable(0.003)
    assert not separable(0.05)  # strictly below alpha
    assert not separable(0.2)
    assert separable(0.02, alpha=0.05) and not separable(0.02, alpha=0.01)
    assert not separable(None)
    assert not separable(math.nan)
    with pytest.raises(ValueError):
        separable(0.01, alpha=0)


def test_verdict_sentences():
    better = PairedResult(0.12, 0.041, 0.199, 0.003)
    assert (
        verdict("moa-v1", "direct", better, percent=True)
        == "moa-v1 is better than direct by 12.0 points (95% CI 4.1 to 19.9, p=0.003)"
    )
    unclear = PairedResult(0.02, -0.051, 0.091, 0.61)
    assert (
        verdict("moa-v1", "direct", unclear, percent=True)
        == "The data cannot separate moa-v1 and direct (difference 2.0 points, 95% CI -5.1 to 9.1, p=0.61)"
    )
    worse = PairedResult(-0.12, -0.199, -0.041, 0.0004)
    assert (
        verdict("moa-v1", "direct", worse, percent=True)
        == "direct is better than moa-v1 by 12.0 points (95% CI 4.1 to 19.9, p<0.001)"
    )


def test_verdict_plain_units_and_lower_is_better():
    slower = PairedResult(120.4, 80.2, 160.9, 0.001)
    assert (
        verdict("moa", "direct", slower, higher_is_better=False, better="faster", unit="ms")
        == "direct is faster than moa by 120 ms (95% CI 80 to 161, p=0.001)"
    )
    score = PairedResult(0.0338, 0.0141, 0.0531, 0.02, level=0.9)
    assert verdict("a", "b", score) == "a is better than b by 0.0338 (90% CI 0.0141 to 0.0531, p=0.020)"


def test_verdict_never_contradicts_its_numbers():
    # p below alpha but the interval crosses zero: no winner is named.
    mixed = PairedResult(0.05, -0.001, 0.1, 0.04)
    assert verdict("a", "b", mixed, percent=True).startswith("The data cannot separate a and b")
    # Interval excludes zero but p is not below alpha (Cavo: Newcombe CI vs exact McNemar).
    a, b = table_to_pairs(59, 6, 16, 80)
    assert (
        verdict("a", "b", paired_proportion_diff(a, b), percent=True)
        == "The data cannot separate a and b (difference -6.2 points, 95% CI -11.9 to -0.5, p=0.052)"
    )
    # p just under alpha is not rounded up to look like alpha.
    edge = PairedResult(0.1, 0.01, 0.2, 0.0499)
    assert verdict("a", "b", edge, percent=True).endswith("p=0.0499)")
    # A difference that rounds to zero is printed without a minus sign.
    tiny = PairedResult(-0.0004, -0.05, 0.05, 0.9)
    assert "difference 0.0 points" in verdict("a", "b", tiny, percent=True)


def test_verdict_without_data():
    empty = paired_bootstrap([], [])
    assert verdict("a", "b", empty) == "The data cannot separate a and b (no paired items to compare)"


def test_paired_result_is_separable_requires_p_and_interval_to_agree():
    assert PairedResult(0.12, 0.041, 0.199, 0.003).is_separable()
    assert PairedResult(-0.12, -0.199, -0.041, 0.003).is_separable()
    assert not PairedResult(0.12, 0.041, 0.199, 0.003).is_separable(alpha=0.001)
    assert not PairedResult(0.05, -0.001, 0.1, 0.04).is_separable()  # p says yes, CI says no
    a, b = table_to_pairs(59, 6, 16, 80)  # CI says yes (-0.1186 to -0.0046), p = 0.052 says no
    assert not paired_proportion_diff(a, b).is_separable()
    assert not paired_bootstrap([], []).is_separable()
