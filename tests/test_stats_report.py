"""The eval report with repeats and several modes: intervals count cases (not case × repeat
rows), pairs are tested on case means, p-values are Holm-adjusted over the comparisons, and a
pair the data cannot separate says how many cases a difference of its size would need."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from composite_cli.evals import stats
from composite_cli.evals.report import build_report, compare_runs, render_markdown
from composite_cli.traces.eval_records import EvalResultRecord, begin_eval, finish_eval, record_eval_result
from composite_cli.traces.store import TraceStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TraceStore]:
    s = TraceStore(tmp_path / "traces.db").open()
    yield s
    s.close()


def seed(store: TraceStore, eval_id: str, scores: dict[str, list[list[float]]]) -> str:
    """An eval whose mode m scored scores[m][case][repeat]."""
    modes = list(scores)
    cases = len(next(iter(scores.values())))
    repeats = len(next(iter(scores.values()))[0])
    begin_eval(
        store,
        eval_run_id=eval_id,
        file="e.jsonl",
        file_hash="h",
        modes=modes,
        profile="dry",
        settings={"repeats": repeats},
        cases=cases,
    )
    for mode, by_case in scores.items():
        for c, repeats_scores in enumerate(by_case):
            for r, score in enumerate(repeats_scores):
                record_eval_result(
                    store,
                    EvalResultRecord(
                        id=f"{eval_id}-{mode}-{c}-{r}",
                        eval_run_id=eval_id,
                        case_id=f"case{c}",
                        mode=mode,
                        repeat=r,
                        latency_ms=10.0,
                        created_at="2026-01-01T00:00:00Z",
                        input="q",
                        score=score,
                        passed=score == 1.0,
                        tokens=10,
                        calls=1,
                        cost_usd=0.0,
                    ),
                )
    finish_eval(store, eval_id, "done")
    return eval_id


def test_repeats_make_the_interval_count_cases_not_rows(store: TraceStore) -> None:
    # 5 cases x 3 repeats; a case's repeats always agree (3 cases pass, 2 fail)
    eval_id = seed(store, "e1", {"direct": [[1, 1, 1]] * 3 + [[0, 0, 0]] * 2})
    report = build_report(store, eval_id)
    mode = report["modes"][0]
    assert (mode["n"], mode["cases"], mode["repeats"]) == (15, 5, 3)
    assert mode["n_text"] == "5 cases × 3 repeats"
    assert mode["ci_method"] == "wilson-clustered"
    # perfectly correlated repeats carry what 5 cases carry, not 15 rows
    assert mode["ci"] == pytest.approx(list(stats.wilson_interval(3, 5)))
    naive = stats.wilson_interval(9, 15)
    assert mode["ci"][0] < naive[0] and mode["ci"][1] > naive[1]
    markdown = render_markdown(report)
    assert "| direct $⏱ | 5×3 |" in markdown
    assert "each 95% CI counts cases, not rows" in markdown


def test_without_repeats_the_interval_is_the_plain_one(store: TraceStore) -> None:
    eval_id = seed(store, "e2", {"direct": [[1]] * 3 + [[0]] * 2, "other": [[0.5]] * 2 + [[0.25]] * 3})
    direct, other = build_report(store, eval_id)["modes"]
    assert direct["ci_method"] == "wilson" and direct["ci"] == list(stats.wilson_interval(3, 5))
    assert direct["n_text"] == "5 cases" and direct["design_effect"] == 1.0
    assert other["ci_method"] == "bootstrap"
    assert other["ci"] == list(stats.bootstrap_mean_ci([0.5, 0.5, 0.25, 0.25, 0.25]))


def test_graded_scores_with_repeats_resample_whole_cases(store: TraceStore) -> None:
    eval_id = seed(store, "e3", {"judge": [[0.9, 0.8], [0.2, 0.3], [0.6, 0.7], [0.1, 0.2]]})
    mode = build_report(store, eval_id)["modes"][0]
    assert mode["ci_method"] == "case-bootstrap"
    naive = stats.bootstrap_mean_ci([0.9, 0.8, 0.2, 0.3, 0.6, 0.7, 0.1, 0.2])
    assert mode["ci"][1] - mode["ci"][0] > naive[1] - naive[0]


def test_pairs_use_case_means_and_say_so(store: TraceStore) -> None:
    a = [[1, 1, 0]] * 6
    b = [[0, 0, 1]] * 6
    eval_id = seed(store, "e4", {"a": a, "b": b})
    pair = build_report(store, eval_id)["pairs"][0]
    # six cases (not 18 rows), each a's mean 2/3 against b's 1/3
    assert pair["n"] == 6 and pair["test"] == "paired bootstrap"
    assert pair["diff"] == pytest.approx(1 / 3)
    assert pair["comparisons"] == 1 and pair["p_adjusted"] == pair["p"]
    assert "Holm" not in pair["verdict"]
    # pass/fail rows: a difference of repeat means is still in points
    assert "(difference 33.3 points, 95% CI" in pair["verdict"] or "by 33.3 points" in pair["verdict"]
    assert "n=6 cases, each the mean of its 3 repeats" in render_markdown(build_report(store, eval_id))


def test_several_modes_get_holm_adjusted_p_values_in_their_verdicts(store: TraceStore) -> None:
    # 12 cases: "good" passes all, "bad" fails all, "mid" passes half
    eval_id = seed(
        store,
        "e5",
        {"good": [[1]] * 12, "bad": [[0]] * 12, "mid": [[1]] * 6 + [[0]] * 6},
    )
    pairs = build_report(store, eval_id)["pairs"]
    raw = [pair["p"] for pair in pairs]
    assert [pair["p_adjusted"] for pair in pairs] == pytest.approx(stats.holm_adjust(raw))
    assert all(pair["comparisons"] == 3 for pair in pairs)
    good_bad = pairs[0]
    assert good_bad["separable"] and "Holm-adjusted over 3 comparisons" in good_bad["verdict"]
    assert good_bad["verdict"].startswith("good is better than bad by 100.0 points")
    # good vs mid: 6 discordant pairs, raw p = 0.031 < 0.05, but Holm over 3 makes it 0.0625
    good_mid = pairs[1]
    assert good_mid["p"] == pytest.approx(2 * 0.5**6)
    assert not good_mid["separable"]
    assert "p=0.062, Holm-adjusted over 3 comparisons" in good_mid["verdict"]


def test_a_pair_that_cannot_be_separated_gets_a_power_estimate(store: TraceStore) -> None:
    # 20 cases: a alone passes 5, b alone passes 2: McNemar p = 0.45
    a = [[1]] * 5 + [[0]] * 2 + [[1]] * 6 + [[0]] * 7
    b = [[0]] * 5 + [[1]] * 2 + [[1]] * 6 + [[0]] * 7
    eval_id = seed(store, "e6", {"a": a, "b": b})
    pair = build_report(store, eval_id)["pairs"][0]
    assert not pair["separable"]
    assert pair["cases_needed"] == stats.mcnemar_cases_needed(5 / 20, 2 / 20)
    assert pair["cases_needed"] == 120  # Connor (1987): p10 = 0.25, p01 = 0.10
    assert pair["verdict"].endswith(
        "; a difference of 15.0 points would need about 120 cases to detect "
        "(80% power at alpha 0.05, exact McNemar; this eval has 20)"
    )
    same = seed(store, "e7", {"a": [[1]] * 4, "b": [[1]] * 4})
    tie = build_report(store, same)["pairs"][0]
    assert tie["cases_needed"] is None
    assert tie["verdict"].endswith("; no difference to size a power estimate on (this eval has 4 cases)")


def test_compare_runs_adjusts_over_the_modes_it_compares(store: TraceStore) -> None:
    first = seed(store, "r1", {"x": [[1]] * 8, "y": [[1]] * 8})
    second = seed(store, "r2", {"x": [[0]] * 8, "y": [[1]] * 8})
    out = compare_runs(store, first, second)
    x, y = out["modes"]
    assert x["comparisons"] == y["comparisons"] == 2
    assert x["p_adjusted"] == pytest.approx(min(1.0, 2 * x["p"]))
    assert "Holm-adjusted over 2 comparisons" in x["verdict"]
