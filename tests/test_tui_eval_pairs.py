"""The TUI's eval screen states a pair's p-value as the verdict uses it: Holm-adjusted, and saying
so, when the eval compared several pairs (evals/report.py); the raw one for a single pair."""

from __future__ import annotations

from typing import Any

from composite_cli.tui.screens.evals import pair_text


def _pair(**kw: Any) -> dict[str, Any]:
    return {
        "a": "direct", "b": "vote-v1", "diff": 0.2, "ci": (0.05, 0.35), "p": 0.012, "test": "exact McNemar",
        "n": 60, "wins_a": 2, "wins_b": 14, "ties": 44, "separable": True, "verdict": "vote-v1 is better",
        **kw,
    }  # fmt: skip


def test_several_pairs_show_the_holm_adjusted_p() -> None:
    text = pair_text(_pair(p_adjusted=0.036, comparisons=3), {}).plain
    assert "p=0.036 (Holm over 3)" in text and "p=0.012" not in text


def test_one_pair_shows_its_p() -> None:
    assert "p=0.012," in pair_text(_pair(p_adjusted=0.012, comparisons=1), {}).plain
    assert "p=0.012," in pair_text(_pair(), {}).plain  # an eval saved before the adjustment
