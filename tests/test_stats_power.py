"""Holm's adjustment on known p-values, and the cases a paired test needs (known examples)."""

from __future__ import annotations

import math

import pytest

from composite_cli.evals import stats


def test_holm_on_known_p_values() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04); back in input order
    assert stats.holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # Holm (1979)-style example: four tests
    assert stats.holm_adjust([0.001, 0.2, 0.012, 0.04]) == pytest.approx([0.004, 0.2, 0.036, 0.08])
    assert stats.holm_adjust([0.5]) == [0.5]
    assert stats.holm_adjust([]) == []
    assert stats.holm_adjust([0.6, 0.7]) == [1.0, 1.0]  # capped at 1


def test_holm_refuses_what_is_not_a_p_value() -> None:
    with pytest.raises(ValueError):
        stats.holm_adjust([1.5])
    with pytest.raises(ValueError):
        stats.holm_adjust([math.nan])


def test_mcnemar_cases_needed_on_connors_example() -> None:
    # Connor (1987): p10 = 0.25, p01 = 0.10, alpha 0.05 two-sided, power 0.8 -> 120 pairs
    assert stats.mcnemar_cases_needed(0.25, 0.10) == 120
    assert stats.mcnemar_cases_needed(0.10, 0.25) == 120  # the direction does not matter
    assert stats.mcnemar_cases_needed(0.2, 0.2) is None  # no difference to detect
    assert stats.mcnemar_cases_needed(0.5, 0.0) == 14  # (1.96 sqrt(.5) + .84 sqrt(.25))^2 / .25 = 13.06
    # a large difference still needs the 6 discordant pairs the exact test needs at 0.05:
    # Connor's formula says 6 cases, but 6 x 0.9 = 5.4 discordant pairs cannot reach p < 0.05
    assert stats.mcnemar_cases_needed(0.9, 0.0) == 7
    with pytest.raises(ValueError):
        stats.mcnemar_cases_needed(0.7, 0.6)


def test_paired_cases_needed_on_a_known_effect_size() -> None:
    # differences with mean 0.5 and standard deviation exactly 1 (d = 0.5): Guenther gives 34
    half = 0.5
    diffs = [half + 1.0, half - 1.0] * 8
    sd = math.sqrt(sum((d - half) ** 2 for d in diffs) / (len(diffs) - 1))
    n = ((1.959963984540054 + 0.8416212335729143) * sd / half) ** 2 + 1.959963984540054**2 / 2
    assert stats.paired_cases_needed(diffs) == math.ceil(n)
    exact_sd_one = [half + 1.0 / math.sqrt(16 / 15), half - 1.0 / math.sqrt(16 / 15)] * 8
    assert stats.paired_cases_needed(exact_sd_one) == 34
    assert stats.paired_cases_needed([0.1, -0.1]) is None
    assert stats.paired_cases_needed([0.3]) is None
    assert stats.paired_cases_needed([0.5, 0.5, 0.5]) == 6  # no spread: the sign-flip floor


def test_power_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="alpha"):
        stats.mcnemar_cases_needed(0.2, 0.1, alpha=0.0)
    with pytest.raises(ValueError, match="power"):
        stats.paired_cases_needed([0.1, 0.2], power=1.0)


def test_verdict_names_the_adjustment_next_to_the_p_value() -> None:
    result = stats.PairedResult(0.2, 0.05, 0.35, 0.03)
    text = stats.verdict("a", "b", result, percent=True, p_note="Holm-adjusted over 3 comparisons")
    assert (
        text
        == "a is better than b by 20.0 points (95% CI 5.0 to 35.0, p=0.030, Holm-adjusted over 3 comparisons)"
    )
