"""One reader of answers (composite_cli/answers.py) for the eval scorers and a `vote` step: the
number an answer gives, the option letter it states, the phrase it marks and the normalization
that makes two answers comparable. The scorers' own tests (tests/test_eval_scorers.py) pin that
they did not change; these pin what the vote gained from the shared reader (each case below was
read differently by the vote's own extractor, and wrongly)."""

from __future__ import annotations

from collections import Counter

import pytest

import composite_cli.answers as answers
from composite_cli.engine.steps import vote
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.evals.scorers import choice, numeric, text


def test_the_scorers_and_the_vote_use_one_reader() -> None:
    assert numeric.pick_number is answers.pick_number and numeric.find_numbers is answers.find_numbers
    assert choice.choose_letter is answers.choose_letter
    assert text.fold is answers.fold and text.normalize_exact is answers.normalize_exact
    assert vote.extract_answer is answers.extract_answer and vote.EXTRACTS is answers.EXTRACTS


@pytest.mark.parametrize(
    ("reply", "number"),
    [
        # the result of the calculation the marker introduces, not its first operand (was 50)
        ("Pens cost 4 x 5 and notebooks 3 x 2.\nThe answer is 50 - 27 = 23.", "23"),
        # a final "= X" marks the answer; a parenthetical after it does not (was 3)
        ("So the change is 50 - 27 = 23 (4 pens and 3 notebooks).", "23"),
        # a clock time is not a quantity (was 30)
        ("It takes 45 minutes, so the train arrives at 10:30", "45"),
        # unchanged: the marked number, else the last one
        ("First 40, then 2 more.\nAnswer: 42", "42"),
        ("It costs $1,250.", "1250"),
        ("\\boxed{42.0}", "42"),
        ("no number here", None),
    ],
)
def test_a_vote_reads_the_number_the_numeric_scorer_reads(reply: str, number: str | None) -> None:
    assert answers.extract_answer(reply, "number") == number
    marked, _ = answers.pick_number(reply)
    if marked is not None:
        assert answers.number_key(marked) == number


def test_a_vote_reads_the_letter_the_choice_scorer_reads() -> None:
    echoed = "A) red\nB) blue\nC) green"
    assert answers.extract_answer(echoed, "choice") is None  # as before
    assert answers.choose_letter(echoed)[1] == "label"  # ambiguous at its strongest tier
    assert answers.extract_answer("I would go with E", "choice") == "E"  # A-E; was None
    assert answers.choose_letter("I would go with E")[0] == []  # the scorer's options are A-D


def test_the_same_phrase_is_one_answer_whatever_its_article_case_or_accents() -> None:
    replies = ["Answer: The Eiffel Tower.", "answer is eiffel tower", "Reasoning...\nEiffel Tower"]
    assert {answers.extract_answer(r, "phrase") for r in replies} == {"eiffel tower"}  # were 2
    # were 'zürich' and 'zurich'
    assert answers.extract_answer("Answer: Zürich", "phrase") == answers.extract_answer("Zurich", "phrase")
    assert answers.extract_answer("The answer is Paris.", "text") == "paris"  # was 'the answer is paris'


def test_the_majority_counts_the_shared_readings() -> None:
    samples = Candidates(
        [
            TextValue("The answer is 50 - 27 = 23."),
            TextValue("Answer: 23"),
            TextValue("A) 23\nB) 50"),  # echoes options: no number is marked; the last one counts
        ],
        ["sample1", "sample2", "sample3"],
    )
    index, tally, keys = vote.majority(samples, "number")
    assert keys == ["23", "23", "50"] and tally == Counter({"23": 2, "50": 1}) and index == 0


def test_unknown_kinds_and_option_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown extract"):
        answers.extract_answer("x", "vibes")
    with pytest.raises(ValueError, match="letters from A on"):
        answers.choose_letter("x", "BCD")
