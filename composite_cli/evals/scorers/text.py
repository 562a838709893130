"""Text scorers: `exact`, `contains` and `regex`, and the normalization they use.

Normalization differs per scorer on purpose and is documented on each class: `exact` folds
punctuation and articles away, `contains` folds only case, accents and typography, and `regex`
sees the raw text. `fold` and `normalize_exact` are composite_cli/answers.py's (a `vote` step
compares answers with `normalize_exact` too).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from composite_cli.answers import WORD_CHAR, fold, normalize_exact
from composite_cli.evals.scorers.base import JudgeFn, Score, Scorer, answer_text, shorten
from composite_cli.patterns import FLAGS, PatternError, compile_pattern

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase

__all__ = ["WORD_CHAR", "ContainsScorer", "ExactScorer", "RegexScorer", "fold", "normalize_exact"]


def _strings(expected: Any) -> list[str]:
    return [expected] if isinstance(expected, str) else list(expected)


def _check_strings(expected: Any) -> str | None:
    if isinstance(expected, str):
        expected = [expected]
    if not isinstance(expected, list) or not expected:
        return "expected must be a string or a non-empty list of strings"
    if not all(isinstance(e, str) and e.strip() for e in expected):
        return "expected must hold only non-empty strings"
    return None


# --------------------------------------------------------------------------- exact / contains


class ExactScorer(Scorer):
    """The answer equals `expected` (or one of a list) after `normalize_exact` on both sides.

    So "The answer is: Paris." == "paris" and "the Sicilian" == "Sicilian", but "Paris, France"
    != "Paris". Symbols count as punctuation ("$23" == "23").
    """

    name = "exact"

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        return _check_strings(expected)

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        got = normalize_exact(answer_text(message))
        for want in _strings(case.expected):
            if got == normalize_exact(want):
                return Score(1.0, f"equals {want!r}")
        return Score(0.0, f"answer {shorten(got)} equals none of {shorten(case.expected)}")


def _contains_pattern(entry: str, whole_word: bool) -> re.Pattern[str]:
    """A match must start at a word start. It must also end at a word end, unless the entry ends
    in a word of 4+ letters: such entries are stems ("promot" -> promotion, "long castl" ->
    castling, "pin" stays whole so it does not match "pint")."""
    folded = fold(entry)
    last = re.search(r"[^\W\d_]+$", folded)
    stem = not whole_word and last is not None and len(last.group()) >= 4
    end = "" if stem else rf"(?!{WORD_CHAR})"
    return re.compile(rf"(?<!{WORD_CHAR}){re.escape(folded)}{end}")


class ContainsScorer(Scorer):
    """The answer contains any of the expected strings, at word boundaries.

    Both sides go through `fold` (case, accents, curly quotes, dashes as spaces), so "Grunfeld"
    finds "Grünfeld" and "Caro Kann" finds "Caro-Kann". A match must start at a word start, so
    "no" is not found in "know"; it must end at a word end unless the entry ends in a word of four
    or more letters, which is then a stem ("promot" finds "promotion", "fork" finds "forking").
    Option `whole_word: true` requires a word end for every entry.
    """

    name = "contains"
    options = frozenset({"whole_word"})

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        if "whole_word" in options and not isinstance(options["whole_word"], bool):
            return "whole_word must be true or false"
        return _check_strings(expected)

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        got = fold(answer_text(message))
        whole = bool(case.options.get("whole_word", False))
        for want in _strings(case.expected):
            if _contains_pattern(want, whole).search(got):
                return Score(1.0, f"contains {want!r}")
        return Score(0.0, f"contains none of {shorten(case.expected)}")


# --------------------------------------------------------------------------- regex


def _regex_patterns(expected: Any, options: dict[str, Any]) -> list[str]:
    pattern = options.get("pattern", expected)
    return [pattern] if isinstance(pattern, str) else list(pattern)


class RegexScorer(Scorer):
    """A pattern is found in the answer (a search on the raw text, think blocks removed).

    The pattern is option `pattern`, else `expected` (a string or a list: any may match); option
    `flags` is a string of letters from "imsx". Patterns come from eval files, so each match is
    bounded in time (composite_cli/patterns.py).
    """

    name = "regex"
    options = frozenset({"pattern", "flags"})

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        flags = options.get("flags", "")
        if not isinstance(flags, str) or set(flags) - set(FLAGS):
            return f"flags must be a string of letters from 'imsx', got {flags!r}"
        source = options.get("pattern", expected)
        if isinstance(source, str):
            source = [source]
        if not isinstance(source, list) or not source or not all(isinstance(p, str) for p in source):
            return "needs a pattern: option pattern, or expected as a string or a list of strings"
        for pattern in source:
            try:
                compile_pattern(pattern, flags)
            except PatternError as exc:
                return f"invalid pattern {pattern!r}: {exc}"
        return None

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        text = answer_text(message)
        flags = case.options.get("flags", "")
        for pattern in _regex_patterns(case.expected, case.options):
            found = compile_pattern(pattern, flags).search(text)
            if found:
                return Score(1.0, f"/{pattern}/ matched {shorten(found.group())}")
        return Score(0.0, f"no match for {shorten(_regex_patterns(case.expected, case.options))}")
