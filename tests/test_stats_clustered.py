"""Clustered intervals: repeats of one case are correlated, so the interval must be wider than one
that treats every case × repeat row as independent, and the same when each case ran once."""

from __future__ import annotations

import math
import random

import pytest

from composite_cli.evals import stats


def rows(case_outcomes: list[list[int]]) -> tuple[list[int], list[str]]:
    values = [v for outcomes in case_outcomes for v in outcomes]
    clusters = [f"c{i}" for i, outcomes in enumerate(case_outcomes) for _ in outcomes]
    return values, clusters


def test_correlated_repeats_widen_the_wilson_interval() -> None:
    # 8 cases x 3 repeats, repeats mostly agree: 15 of 24 rows pass
    values, clusters = rows([[1, 1, 1]] * 4 + [[1, 1, 0]] + [[0, 0, 0]] * 2 + [[1, 0, 0]])
    naive = stats.wilson_interval(sum(values), len(values))
    clustered = stats.clustered_wilson_interval(values, clusters)
    assert clustered[0] < naive[0] and clustered[1] > naive[1]
    deff = stats.design_effect(values, clusters)
    assert 1.0 < deff <= 3.0
    # the same Wilson formula at the effective sample size n / deff
    p, n = sum(values) / len(values), len(values) / deff
    z = 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert clustered == pytest.approx((centre - half, centre + half))


def test_repeats_that_always_agree_count_as_one_case_each() -> None:
    values, clusters = rows([[1, 1, 1]] * 3 + [[0, 0, 0]] * 2)
    assert stats.design_effect(values, clusters) == pytest.approx(3.0)
    assert stats.clustered_wilson_interval(values, clusters) == pytest.approx(stats.wilson_interval(3, 5))
    # all passing: nothing shows how correlated the repeats are; count the 5 cases
    all_pass, cl = rows([[1, 1, 1]] * 5)
    assert stats.clustered_wilson_interval(all_pass, cl) == pytest.approx(stats.wilson_interval(5, 5))


def test_one_row_per_case_gives_exactly_the_plain_intervals() -> None:
    rng = random.Random(7)
    passed = [rng.random() < 0.6 for _ in range(40)]
    ids = [f"case{i}" for i in range(40)]
    assert stats.design_effect([float(p) for p in passed], ids) == 1.0
    assert stats.clustered_wilson_interval(passed, ids) == stats.wilson_interval(sum(passed), 40)
    scores = [rng.random() for _ in range(40)]
    assert stats.cluster_bootstrap_mean_ci(scores, ids, seed=3) == stats.bootstrap_mean_ci(scores, seed=3)


def test_independent_looking_repeats_keep_the_naive_width() -> None:
    # within-case agreement no higher than chance: the design effect stays at its floor, 1
    values, clusters = rows([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1]])
    assert stats.design_effect(values, clusters) == 1.0
    assert stats.clustered_wilson_interval(values, clusters) == stats.wilson_interval(6, 12)


def test_clustered_standard_error_matches_the_sandwich_formula() -> None:
    # inspect_ai's stderr(cluster=) on the same data: C/(C-1) * sum of squared cluster residual sums
    values = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    clusters = [0, 1, 1, 1, 0, 0]
    mean = 0.5
    sums = [(1 - mean) + 2 * (0 - mean), 2 * (1 - mean) + (0 - mean)]
    expected = math.sqrt(sum(s * s for s in sums) * 2 / 1) / 6
    assert stats.clustered_standard_error(values, clusters) == pytest.approx(expected)
    singletons = list(range(6))
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 5)
    assert stats.clustered_standard_error(values, singletons) == pytest.approx(sd / math.sqrt(6))
    assert math.isnan(stats.clustered_standard_error([1.0, 0.0], ["a", "a"]))


def test_case_bootstrap_is_wider_on_correlated_graded_repeats() -> None:
    per_case = [0.9, 0.2, 0.6, 0.1, 0.8, 0.4]
    values = [c + d for c in per_case for d in (-0.02, 0.0, 0.02)]
    clusters = [i for i in range(len(per_case)) for _ in range(3)]
    naive = stats.bootstrap_mean_ci(values)
    clustered = stats.cluster_bootstrap_mean_ci(values, clusters)
    assert clustered[1] - clustered[0] > 1.3 * (naive[1] - naive[0])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="one cluster per value"):
        stats.clustered_wilson_interval([1, 0], ["a"])
    with pytest.raises(ValueError, match="pass/fail"):
        stats.clustered_wilson_interval([0.5], ["a"])
    with pytest.raises(ValueError):
        stats.cluster_bootstrap_mean_ci([math.nan], ["a"])
    assert stats.clustered_wilson_interval([], []) == (0.0, 1.0)
    assert all(math.isnan(v) for v in stats.cluster_bootstrap_mean_ci([], []))
