"""The `choice` scorer: multiple choice, A-D, read from the letter the answer states or from the
text of the option it names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from composite_cli.evals.scorers.base import JudgeFn, Score, Scorer, answer_text, pass_fail
from composite_cli.evals.scorers.text import WORD_CHAR, normalize_exact

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase

_LETTERS = "ABCD"
# A letter after a keyword: keywords ignore case; letters do not. An uppercase letter counts when
# it is not part of a word; a lowercase one only when no word follows it, so "the answer is a
# knight" is not read as option A. "A" followed by a word is the article ("the answer is: A
# draw"), unless that word cannot start a noun phrase ("A because ...", "A is ...").
_CONNECTORS = r"(?:is|was|because|since|as|and|or|but|would|seems|fits|here)\b"
_LETTER = (
    rf"[(\[]?\s*(?:(A)(?!{WORD_CHAR})(?!\s+(?!{_CONNECTORS})[A-Za-z])|([B-D])(?!{WORD_CHAR})"
    rf"|([a-d])(?!\w)(?!\s+[A-Za-z]))"
)
_OPTION_WORD = r"(?:option|choice|letter)"
# Tier 1, a statement: "the answer is B", "Answer: B", "the correct option is B", "I choose C".
_STATEMENTS = [
    re.compile(
        r"(?i:\banswer\s*(?:is|would\s+be|will\s+be|should\s+be|[:=\-])?\s*[:\-]?\s*"
        rf"{_OPTION_WORD}?)\s*" + _LETTER
    ),
    re.compile(
        rf"(?i:\b(?:correct|right|best|final)\s+{_OPTION_WORD}\s*(?:is|would\s+be|[:=\-])?\s*[:\-]?)\s*"
        + _LETTER
    ),
    re.compile(rf"(?i:\b(?:choose|chose|select|pick|go\s+with)\s+(?:{_OPTION_WORD}\s*)?)" + _LETTER),
    re.compile(r"\\boxed\{\s*([A-D])\s*\}"),
]
# Tier 2, a label at the start of the reply or of a line: "B", "(B)", "B)", "B.", "B:".
_LABELS = [re.compile(r"(?:^|\n)\s*[(\[]?([A-D])(?:[)\].:]|\s*$|\s*\n)")]
# Tier 3, a mention: "option B", "choice C" ("option A is wrong" loses to a label or statement).
_MENTIONS = [re.compile(rf"(?i:\b{_OPTION_WORD}\s*[:\-]?)\s*" + _LETTER)]
# Tier 4, anywhere: "(B)", a bare B/C/D that is not part of a word or a hyphenated token, or an
# "A" that ends a clause or is followed by "is correct" (otherwise "A" is the article).
_NOT_IN_WORD = rf"(?<!{WORD_CHAR})(?<!['\-])"  # not part of a word, a contraction or "3-D"
_BARE = [
    re.compile(r"\(([A-D])\)"),
    re.compile(rf"{_NOT_IN_WORD}([B-D])(?!{WORD_CHAR})(?!['\-]\w)"),
    re.compile(rf"{_NOT_IN_WORD}(A)(?=\)|\s*$|[.,;:!?](?:\s|$)|\s+is\s+(?:correct|right|the))"),
]


def _letters(patterns: Iterable[re.Pattern[str]], text: str) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        for match in pattern.finditer(text):
            letter = next((g for g in match.groups() if g), "").upper()
            if letter and letter not in found:
                found.append(letter)
    return found


def choose_letter(text: str) -> tuple[list[str], str]:
    """The option letters the answer states, and how they were found (`how` is empty if none).

    The first tier that finds any letter decides: a statement ("the answer is B", "the correct
    option is B", "I choose B", \\boxed{B}) beats a "B)" label at the start of a line, which
    beats a mention ("option B"), which beats a bare "B" or "(B)" anywhere. More than one
    distinct letter in the deciding tier means the answer is ambiguous (e.g. echoed options).
    """
    text = text.replace("*", "").replace("`", "")
    tiers = (
        ("statement", _STATEMENTS),
        ("label", _LABELS),
        ("mention", _MENTIONS),
        ("letter", _BARE),
    )
    for how, patterns in tiers:
        letters = _letters(patterns, text)
        if letters:
            return letters, how
    return [], ""


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
