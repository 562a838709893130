"""The `choice` scorer: multiple choice, A-D, read from the letter the answer states or from the
text of the option it names. The letter is read by composite_cli/answers.py's `choose_letter`,
shared with `vote`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from composite_cli.answers import CHOICE_LETTERS, choose_letter, normalize_exact
from composite_cli.evals.scorers.base import JudgeFn, Score, Scorer, answer_text, pass_fail

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase

__all__ = ["ChoiceScorer", "choose_letter"]

_LETTERS = CHOICE_LETTERS


def _phrase_in(phrase: str, text: str) -> bool:
    return bool(phrase) and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


class ChoiceScorer(Scorer):
    """Multiple choice: `expected` is a letter A-D; the answer's chosen letter must equal it.

    The letter is taken from "B", "(B)", "B)", "**B**", "Answer: B", "the answer is B", "option
    B" (see `choose_letter`); letters inside words ("Bishop") and the article "A" do not count.
    Two different letters at the same strength -> 0 ("ambiguous"). With option `choices` (the
    option texts in A-D order), an answer with no letter may instead state one option's text
    (compared after `normalize_exact`, as a whole phrase); if the texts of several options
    appear, the longest wins only when it contains the others ("Yes, always" over "Yes"),
    otherwise the answer is ambiguous. One option's text also beats a bare letter found only
    in passing ("N, because B is the bishop"), but never a statement or a label.
    """

    name = "choice"
    options = frozenset({"choices"})

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        choices = options.get("choices")
        letters = _LETTERS
        if choices is not None:
            if not isinstance(choices, list) or not 2 <= len(choices) <= 4:
                return "choices must be a list of 2 to 4 option texts (A, B, C, D)"
            if not all(isinstance(c, str) and c.strip() for c in choices):
                return "choices must hold only non-empty strings"
            letters = _LETTERS[: len(choices)]
        if not isinstance(expected, str) or expected.strip().upper() not in letters:
            return f"expected must be one of the letters {', '.join(letters)}, got {expected!r}"
        return None

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        want = str(case.expected).strip().upper()
        text = answer_text(message)
        letters, how = choose_letter(text)
        choices = case.options.get("choices")
        by_text = self._by_text(text, choices) if choices else None
        if by_text and len(by_text) == 1 and how in ("", "letter"):
            # One option's text, and at most a bare letter somewhere ("N, since B is the bishop").
            return pass_fail(by_text[0] == want, f"chose {by_text[0]} (option text), expected {want}")
        if len(letters) > 1:
            return Score(0.0, f"ambiguous: {how}s {', '.join(letters)}")
        if letters:
            return pass_fail(letters[0] == want, f"chose {letters[0]} ({how}), expected {want}")
        if by_text:
            return Score(0.0, f"ambiguous: states options {', '.join(by_text)}")
        found = "no option letter or option text" if choices else "no option letter"
        return Score(0.0, f"{found} found, expected {want}")

    @staticmethod
    def _by_text(text: str, choices: list[str]) -> list[str] | None:
        answer = normalize_exact(text)
        hits = {
            _LETTERS[i]: norm
            for i, choice in enumerate(choices)
            if _phrase_in(norm := normalize_exact(choice), answer)
        }
        if not hits:
            return None
        # Drop an option whose text is part of another option that also appears.
        kept = [k for k, v in hits.items() if not any(v != o and _phrase_in(v, o) for o in hits.values())]
        return kept
