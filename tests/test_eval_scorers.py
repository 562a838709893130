"""Scorers: each built-in on its edge cases and traps, the judge via a fake JudgeFn, custom scorers."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from composite_cli.evals.dataset import EvalCase
from composite_cli.evals.scorers import (
    SCORERS,
    Score,
    ScorerError,
    choose_letter,
    custom,
    extract_json,
    find_numbers,
    get_scorer,
    match_value,
    normalize_exact,
    parse_judge_reply,
    pick_number,
)


def case(
    scorer: str, expected: Any, messages: list[dict[str, Any]] | None = None, **options: Any
) -> EvalCase:
    return EvalCase(
        id="c1",
        line=1,
        messages=messages or [{"role": "user", "content": "What is it?"}],
        expected=expected,
        scorer=scorer,
        options=options,
    )


def reply(content: str | None, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return message


async def score(scorer: str, expected: Any, content: str | None, **options: Any) -> Score:
    the_case = case(scorer, expected, **options)
    problem = get_scorer(scorer).check(expected, options)
    assert problem is None, problem
    return await get_scorer(scorer).score(the_case, reply(content))


# --------------------------------------------------------------------------- Score


def test_score_passed_only_when_full() -> None:
    assert Score(1.0, "").passed
    assert Score(1 - 1e-12, "").passed
    assert not Score(0.9, "").passed
    assert not Score(0.0, "").passed


def test_score_clamps_float_noise_and_rejects_out_of_range() -> None:
    assert Score(1 + 1e-12, "").value == 1.0
    assert Score(-1e-12, "").value == 0.0
    for bad in (1.5, -0.1, float("nan"), "1", True):
        with pytest.raises(ScorerError):
            Score(bad, "")  # type: ignore[arg-type]


def test_registry_names_and_graded_flags() -> None:
    assert set(SCORERS) == {"exact", "contains", "regex", "choice", "numeric", "json", "tool_call", "judge"}
    assert {name for name, s in SCORERS.items() if s.graded} == {"json", "judge"}
    assert all(s.name == name for name, s in SCORERS.items())


def test_package_reexports_the_public_api() -> None:
    import composite_cli.evals.scorers as scorers

    public = {"Score", "ScorerError", "JudgeFn", "Scorer", "SCORERS", "get_scorer", "answer_text", "fold"}
    public |= {"normalize_exact", "choose_letter", "find_numbers", "pick_number", "extract_json"}
    public |= {"match_value", "judge_prompt", "parse_judge_reply"}
    assert set(scorers.__all__) == public
    assert all(hasattr(scorers, name) for name in public)


def test_unknown_scorer_message() -> None:
    with pytest.raises(ScorerError, match=r"unknown scorer 'exactly' \(built-ins: choice, contains"):
        get_scorer("exactly")


# --------------------------------------------------------------------------- exact


@pytest.mark.parametrize(
    ("expected", "answer", "passed"),
    [
        ("Paris", "paris", True),
        ("Paris", "  Paris.  ", True),
        ("Paris", "The answer is: Paris.", True),
        ("Paris", "Answer: **Paris**", True),
        ("Sicilian", "The Sicilian", True),
        ("Grünfeld", "Grunfeld", True),
        ("Queen's Gambit", "Queen’s gambit", True),
        ("Queen's Gambit", "Queens Gambit", True),
        ("Caro-Kann", "caro kann", True),
        ("Paris", "Paris, France", False),
        ("Paris", "I think it is Paris", False),
        (["Spanish", "Ruy Lopez"], "Ruy López!", True),
        ("3.5", "35", False),
    ],
)
async def test_exact(expected: Any, answer: str, passed: bool) -> None:
    assert (await score("exact", expected, answer)).passed is passed


def test_normalize_exact() -> None:
    assert normalize_exact("  The answer is: The  Ruy-López!  ") == "ruy lopez"
    assert normalize_exact("Queen’s") == "queens"


async def test_exact_ignores_think_block_and_handles_no_content() -> None:
    assert (await score("exact", "42", "<think>maybe 41</think>42")).passed
    assert not (await score("exact", "42", None)).passed


def test_exact_check() -> None:
    exact = get_scorer("exact")
    assert exact.check("x", {}) is None
    assert exact.check(["x", "y"], {}) is None
    assert "non-empty list of strings" in (exact.check(None, {}) or "")
    assert "non-empty list of strings" in (exact.check([], {}) or "")
    assert "only non-empty strings" in (exact.check(["x", 3], {}) or "")


# --------------------------------------------------------------------------- contains


@pytest.mark.parametrize(
    ("expected", "answer", "passed"),
    [
        (["no"], "I don't know", False),  # the trap: "no" inside "know"
        (["no"], "There is nothing", False),  # short entries need a word end too
        (["no"], "No, it is not allowed.", True),
        (["pin"], "This is a spinning top", False),
        (["pin"], "That is a pin.", True),
        (["promot"], "The pawn is promoted to a queen", True),  # entries of 4+ letters are stems
        (["long castl"], "It means castling long... i.e. long castling", True),
        (["d1"], "It starts on d1.", True),
        (["d1"], "It starts on d10.", False),
        (["TM-8653"], "The code is TM-86531", False),  # ends in a digit: never a stem
        (["TM-8653"], "The code is TM-8653.", True),
        (["Grünfeld", "Grunfeld"], "the GRÜNFELD defence", True),
        (["Reykjavik"], "It was played in Reykjavík.", True),
        (["Queen's Gambit"], "That is the Queen’s Gambit", True),
        (["Caro-Kann"], "The Caro Kann", True),
        (["Sicilian"], "**Sicilian** Defence", True),
        (["Sicilian"], "_Sicilian_", True),
        (["Ra8"], "1. Ra8#", True),
        (["knight"], "The knights", True),
        (["knight"], "The bishop", False),
    ],
)
async def test_contains(expected: list[str], answer: str, passed: bool) -> None:
    assert (await score("contains", expected, answer)).passed is passed


async def test_contains_whole_word_option() -> None:
    assert (await score("contains", ["promot"], "promotion")).passed
    assert not (await score("contains", ["promot"], "promotion", whole_word=True)).passed
    assert (await score("contains", ["promotion"], "a promotion.", whole_word=True)).passed


async def test_contains_explanation() -> None:
    result = await score("contains", ["Lasker", "Emanuel Lasker"], "It was Lasker.")
    assert result.explanation == "contains 'Lasker'"
    result = await score("contains", ["Lasker"], "Steinitz")
    assert result.value == 0.0 and "none of" in result.explanation


def test_contains_check() -> None:
    contains = get_scorer("contains")
    assert contains.check(["a"], {"whole_word": True}) is None
    assert contains.check(["a"], {"whole_word": "yes"}) == "whole_word must be true or false"
    assert contains.check(5, {}) == "expected must be a string or a non-empty list of strings"


# --------------------------------------------------------------------------- regex


async def test_regex_pattern_from_option_or_expected() -> None:
    assert (await score("regex", None, "Code: AB-1234", pattern=r"[A-Z]{2}-\d{4}")).passed
    assert (await score("regex", r"\bab-\d+", "Code: AB-1234", flags="i")).passed
    assert not (await score("regex", r"\bab-\d+", "Code: AB-1234")).passed
    assert (await score("regex", ["^x$", "1234"], "Code: AB-1234")).passed
    result = await score("regex", r"\d{5}", "Code: AB-1234")
    assert result.value == 0.0 and "no match" in result.explanation


def test_regex_check() -> None:
    regex = get_scorer("regex")
    assert "invalid pattern '(unclosed'" in (regex.check("(unclosed", {}) or "")
    assert "flags must be a string of letters from 'imsx'" in (regex.check("x", {"flags": "iq"}) or "")
    assert "needs a pattern" in (regex.check(None, {}) or "")
    assert regex.check(None, {"pattern": "a+", "flags": "ims"}) is None


# --------------------------------------------------------------------------- choice


@pytest.mark.parametrize(
    ("answer", "letters"),
    [
        ("B", ["B"]),
        ("(B)", ["B"]),
        ("B)", ["B"]),
        ("B. Castle early", ["B"]),
        ("**B**", ["B"]),
        ("Answer: B", ["B"]),
        ("answer: b", ["B"]),
        ("The answer is B because the king is safer.", ["B"]),
        ("The correct answer is (C).", ["C"]),
        ("I would choose option D.", ["D"]),
        ("The answer is A because it attacks the centre.", ["A"]),
        ("A is correct.", ["A"]),
        ("A", ["A"]),
        ("Bishop", []),  # letters inside words do not count
        ("A draw, because the bishop cannot control h8.", []),  # "A" the article
        ("the answer is a knight", []),
        ("It is a Bishop and a Knight", []),
        ("A) Light\nB) Dark", ["A", "B"]),  # echoed options: ambiguous
        ("Option A is tempting, but the answer is C.", ["C"]),  # "answer is" beats "option A"
        ("The correct option is B because option A fails", ["B"]),
        ("B) Dark\n\nThe square is dark. Option A is wrong.", ["B"]),  # a label beats a mention
        ("Options:\nA) Light - no\nB) Dark - yes\nI choose option B", ["B"]),  # a statement beats labels
        ("I would eliminate option A and option C", ["A", "C"]),
        ("answer: b because", []),  # lowercase counts only when no word follows
        ("The answer is A Knight", []),
        ("C) N\nbecause K is the king and B is the bishop", ["C"]),  # a label beats a bare letter
        ("Maybe B, or maybe C", ["B", "C"]),
        ("The B-file and 3-D", []),
        ("$\\boxed{D}$", ["D"]),
    ],
)
def test_choose_letter(answer: str, letters: list[str]) -> None:
    assert choose_letter(answer)[0] == letters


CHESS_027 = ["The last move is taken back", "A draw", "A win for the player who has no legal move", "A loss"]


@pytest.mark.parametrize(
    ("answer", "passed", "why"),
    [
        ("B", True, "chose B (label), expected B"),
        ("A draw.", True, "chose B (option text), expected B"),  # "A" is the article, the text is B
        ("The correct option is: A draw.", True, "chose B (option text), expected B"),
        ("It's a draw", True, "chose B (option text), expected B"),
        ("A", False, "chose A (label), expected B"),
        ("A) ...\nB) ...", False, "ambiguous: labels A, B"),
        ("Nobody knows", False, "no option letter or option text found, expected B"),
    ],
)
async def test_choice_with_choices(answer: str, passed: bool, why: str) -> None:
    result = await score("choice", "B", answer, choices=CHESS_027)
    assert (result.passed, result.explanation) == (passed, why)


async def test_choice_text_ambiguous_and_nested_options() -> None:
    minor = ["They are equal", "Neither", "Bishop", "Knight"]
    result = await score("choice", "C", "The bishop is stronger than the knight", choices=minor)
    assert result.explanation == "ambiguous: states options C, D"
    castle = ["Only if the rook has not moved", "Only on the kingside", "Yes, always", "No"]
    assert (await score("choice", "D", "No.", choices=castle)).passed
    # "Yes" is not an option on its own here, and "Yes, always" names C only.
    yes_no = ["Yes", "Yes, always", "No", "Never"]
    result = await score("choice", "B", "Yes, always.", choices=yes_no)
    assert result.passed, result.explanation


async def test_choice_single_letter_option_texts() -> None:
    # chess-052: the options are letters themselves; "N" is option C's text, not a letter A-D.
    letters = ["Kn", "K", "N", "H"]
    assert (await score("choice", "C", "N", choices=letters)).passed
    assert not (await score("choice", "C", "Kn", choices=letters)).passed
    assert (await score("choice", "C", "C) N", choices=letters)).passed
    # A bare "B" in passing does not beat the one option text the answer states...
    result = await score("choice", "C", "N (the bishop is B)", choices=letters)
    assert result.explanation == "chose C (option text), expected C"
    # ...but a label does.
    result = await score("choice", "C", "B) K", choices=letters)
    assert result.explanation == "chose B (label), expected C"


async def test_choice_without_choices() -> None:
    assert (await score("choice", "d", "**D**")).passed
    result = await score("choice", "B", "I am not sure.")
    assert result.explanation == "no option letter found, expected B"


def test_choice_check() -> None:
    choice = get_scorer("choice")
    assert choice.check("C", {}) is None
    assert choice.check("E", {}) == "expected must be one of the letters A, B, C, D, got 'E'"
    assert choice.check("C", {"choices": ["x", "y"]}) == "expected must be one of the letters A, B, got 'C'"
    assert "2 to 4 option texts" in (choice.check("A", {"choices": ["x"]}) or "")
    assert "2 to 4 option texts" in (choice.check("A", {"choices": "xy"}) or "")
    assert choice.check("A", {"choices": ["x", ""]}) == "choices must hold only non-empty strings"


# --------------------------------------------------------------------------- numeric


def test_find_numbers() -> None:
    values = [v for _, v in find_numbers("1,234 and -3.5, $23 or 23% then 2.5e3; 1,2,3")]
    assert values == [1234, -3.5, 23, 23, 2500, 1, 2, 3]
    # clock times, ISO dates, digits inside words and a range's dash
    assert [v for _, v in find_numbers("at 9:45 pm on 2025-07-04, e4 and cm2, 3-5")] == [3, 5]
    assert [v for _, v in find_numbers("−7 (unicode minus) and 15th")] == [-7, 15]
    assert [v for _, v in find_numbers("12\u202f000 s, 12\u00a0000 s, but 12 000 is two numbers")] == [
        12000,
        12000,
        12,
        0,
    ]


@pytest.mark.parametrize(
    ("answer", "number", "how"),
    [
        ("The answer is 23. Check: 23 + 27 = 50.", 23, "after 'answer is'"),
        ("Answer: $1,234.50 in total, for 3 items", 1234.5, "after 'answer is'"),
        ("**Final answer:** 215 minutes (3 hours 35 minutes)", 215, "after 'answer is'"),
        ("I first thought 23, but the answer is 24.", 24, "after 'answer is'"),
        ("She pays 27, so the change is 50 - 27 = 23 (4 pens and 3 notebooks).", 23, "after '='"),
        ("$\\boxed{13230}$ people", 13230, "in \\boxed{}"),
        ("The answer is 50 - 27 = 23 dollars.", 23, "after 'answer is'"),
        ("Answer: -4", -4, "after 'answer is'"),
        ("23", None, "no marker"),
        # An "=" earlier in the working is not a marker; only one in the last sentence is.
        ("Pens: 4 x 3 = 12. Notebooks: 3 x 5 = 15. So she gets 23 dollars back.", None, "no marker"),
        ("It ends at 10:05 pm, which is 65 minutes after 9:00 pm.", None, "no marker"),
        ("To answer this: 4 pens and 3 notebooks cost 27, leaving 23", None, "no marker"),
        ("The temperature is -3.5 degrees", None, "no marker"),
        ("No idea", None, "no number"),
    ],
)
def test_pick_number(answer: str, number: float | None, how: str) -> None:
    assert pick_number(answer) == (number, how)


@pytest.mark.parametrize(
    ("expected", "answer", "passed", "options"),
    [
        (23, "She gets $23 back.", True, {}),
        (23, "23.0", True, {}),
        (1234, "1,234", True, {}),
        (415014, "415,014 EUR", True, {}),
        (85, "85%", True, {}),
        (2500, "2.5e3", True, {}),
        (23, "The answer is 23. Check: 23 + 27 = 50.", True, {}),
        # No marker: any number in the answer may match.
        (215, "215 minutes (3 h 35 min)", True, {}),
        (1997, "In 1997 Kasparov lost 3.5–2.5 to Deep Blue.", True, {}),
        (1997, "Kasparov lost 3.5–2.5 in 1997", True, {}),
        (23, "23 dollars, from 4 pens and 3 notebooks", True, {}),
        (23, "Pens: 4 x 3 = 12. Notebooks: 3 x 5 = 15. So she gets 23 dollars back.", True, {}),
        (65, "It ends at 10:05 pm, which is 65 minutes after 9:00 pm.", True, {}),
        (5, "It ends at 10:05 pm, which is 65 minutes after 9:00 pm.", False, {}),  # clock times are skipped
        (23, "1, 2, 3, ... 23, 24, 25", True, {}),  # the price of "anywhere": an unmarked list passes
        (23, "I get 24, or 22 if the pens are free", False, {}),
        (4, "3*4 pens", True, {}),  # unmarked numbers are read with `*` kept: 3 and 4, not 34
        (61, "$61.004", True, {"tolerance": 0.01}),
        (61, "$61.02", False, {"tolerance": 0.01}),
        (1000, "1010", True, {"relative_tolerance": 0.01}),
        (1000, "1011", False, {"relative_tolerance": 0.01}),
        (0.1, "0.1", True, {}),
        (23, "twenty-three", False, {}),
    ],
)
async def test_numeric(expected: float, answer: str, passed: bool, options: dict[str, Any]) -> None:
    assert (await score("numeric", expected, answer, **options)).passed is passed


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("I first thought 23, but the answer is 24.", "found 24 (after 'answer is'), expected 23"),
        ("23 is tempting. Answer: 24", "found 24 (after 'answer is'), expected 23"),
        ("Not 23: $\\boxed{24}$", "found 24 (in \\boxed{}), expected 23"),
        ("23 pens cost 46. So the change is 50 - 26 = 24", "found 24 (after '='), expected 23"),
    ],
)
async def test_numeric_marked_wrong_answer_fails_even_if_right_number_appears(answer: str, why: str) -> None:
    result = await score("numeric", 23, answer)
    assert (result.passed, result.explanation) == (False, why)


async def test_numeric_explanations() -> None:
    result = await score("numeric", 23, "I get 24")
    assert result.explanation == "found 24 (any number, no marker), expected 23"
    result = await score("numeric", 23, "no idea")
    assert result.explanation == "no number in the answer, expected 23"
    result = await score("numeric", 4150140, "4,150,140.5")
    assert result.explanation == "found 4150140.5 (any number, no marker), expected 4150140"
    # A pass names the number that matched (the closest, if several are within tolerance)...
    result = await score("numeric", 215, "215 minutes (3 h 35 min)")
    assert result.explanation == "found 215 (any number, no marker), expected 215"
    result = await score("numeric", 61, "60.95 or 61.02", tolerance=0.1)
    assert result.explanation == "found 61.02 (any number, no marker), expected 61"
    # ...a failure names the numbers found, each once, at most eight.
    result = await score("numeric", 1996, "In 1997 Kasparov lost 3.5–2.5, and 3.5 is not 1997.")
    assert result.explanation == "found 1997, 3.5, 2.5 (any number, no marker), expected 1996"
    result = await score("numeric", 100, " ".join(str(n) for n in range(1, 13)))
    assert (
        result.explanation == "found 1, 2, 3, 4, 5, 6, 7, 8 and 4 more (any number, no marker), expected 100"
    )


def test_numeric_check() -> None:
    numeric = get_scorer("numeric")
    assert numeric.check(3, {"tolerance": 0.5}) is None
    assert numeric.check("3", {}) == "expected must be a number, got '3'"
    assert numeric.check(True, {}) == "expected must be a number, got True"
    assert numeric.check(3, {"tolerance": -1}) == "tolerance must be a non-negative number, got -1"
    assert numeric.check(3, {"relative_tolerance": "1%"}) == (
        "relative_tolerance must be a non-negative number, got '1%'"
    )


# --------------------------------------------------------------------------- json


def test_extract_json() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Here it is:\n```json\n{"a": 1}\n```\nDone.') == {"a": 1}
    assert extract_json('```\n{"a": 2}\n```') == {"a": 2}
    assert extract_json('Sure! {"a": {"b": [1, 2]}} and {"c": 3}') == {"a": {"b": [1, 2]}}
    assert extract_json("[1, 2]") == [1, 2]
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("{not json}")


async def test_json_all_fields_match_in_a_fence() -> None:
    answer = 'The result:\n```json\n{"name": "Ada  Lovelace", "born": 1815.0, "extra": true}\n```'
    result = await score("json", {"name": "ada lovelace", "born": 1815}, answer)
    assert result.passed and result.explanation == "2/2 fields match"


async def test_json_partial_is_graded() -> None:
    expected = {"name": "Ada", "born": 1815, "field": "math", "tags": ["a"]}
    answer = '{"name": "Ada", "born": "1815", "tags": ["a"]}'
    result = await score("json", expected, answer)
    assert result.value == 0.5 and not result.passed
    assert result.explanation == "2/4 fields match; born: got '1815', expected 1815; field: missing"


async def test_json_failures() -> None:
    assert (await score("json", {"a": 1}, "no json here")).explanation == "no JSON object in the answer"
    assert (await score("json", {"a": 1}, "[1]")).explanation == "the answer's JSON is a list, not an object"
    assert get_scorer("json").check({}, {}) == "expected must be a non-empty object of field -> value"
    assert get_scorer("json").graded


def test_match_value() -> None:
    assert match_value(5, 5.0)
    assert not match_value(5, "5")
    assert not match_value(1, True)
    assert match_value(True, True) and not match_value(True, 1)
    assert match_value(None, None)
    assert match_value(" New  York ", "new york")
    assert match_value({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not match_value([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------- tool_call


def call(name: str, arguments: Any, call_id: str = "call_1") -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


WEATHER = {"name": "get_weather", "arguments": {"city": "Paris"}}


async def tool_score(
    expected: dict[str, Any], calls: list[dict[str, Any]] | None, content: str | None = None
) -> Score:
    assert get_scorer("tool_call").check(expected, {}) is None
    return await get_scorer("tool_call").score(case("tool_call", expected), reply(content, calls))


async def test_tool_call_matches_with_extra_arguments() -> None:
    result = await tool_score(WEATHER, [call("get_weather", {"city": " paris ", "unit": "celsius"})])
    assert result.passed and result.explanation == "called get_weather with the expected arguments"


async def test_tool_call_wrong_name_wrong_argument_no_call() -> None:
    result = await tool_score(WEATHER, [call("get_time", {"timezone": "Europe/Paris"})])
    assert result.explanation == "called get_time; expected get_weather"
    result = await tool_score(WEATHER, [call("get_weather", {"city": "Rome"})])
    assert result.explanation == "get_weather: city: got 'Rome', expected 'Paris'; expected get_weather"
    result = await tool_score(WEATHER, [call("get_weather", {})])
    assert "city: missing" in result.explanation
    result = await tool_score(WEATHER, None, content="It is sunny in Paris.")
    assert (result.value, result.explanation) == (0.0, "no tool call, expected get_weather")
    result = await tool_score(WEATHER, [call("get_weather", "{city: Paris")])
    assert "arguments are not valid JSON" in result.explanation


async def test_tool_call_any_call_may_match_and_numbers_by_value() -> None:
    calls = [call("get_weather", {"city": "Paris"}, "c1"), call("get_weather", {"city": "Rome"}, "c2")]
    assert (await tool_score({"name": "get_weather", "arguments": {"city": "Rome"}}, calls)).passed
    money = {"name": "convert_currency", "arguments": {"amount": 250, "from": "USD", "to": "EUR"}}
    assert (
        await tool_score(money, [call("convert_currency", {"amount": 250.0, "from": "usd", "to": "EUR"})])
    ).passed
    assert not (
        await tool_score(money, [call("convert_currency", {"amount": "250", "from": "USD", "to": "EUR"})])
    ).passed
    # "arguments": {} checks only the name
    assert (
        await tool_score({"name": "calculator", "arguments": {}}, [call("calculator", {"expression": "1+1"})])
    ).passed


async def test_tool_call_accepts_litellm_objects() -> None:
    from litellm.types.utils import ChatCompletionMessageToolCall, Function

    obj = ChatCompletionMessageToolCall(
        id="c1", type="function", function=Function(name="get_weather", arguments='{"city": "Paris"}')
    )
    result = await get_scorer("tool_call").score(
        case("tool_call", WEATHER), {"role": "assistant", "content": None, "tool_calls": [obj]}
    )
    assert result.passed


def test_tool_call_check() -> None:
    tool_call = get_scorer("tool_call")
    message = 'expected must be {"name": "<tool>", "arguments": {...}}'
    assert tool_call.check({"name": "f"}, {}) == message
    assert tool_call.check({"name": "", "arguments": {}}, {}) == message
    assert tool_call.check({"name": "f", "arguments": []}, {}) == message
    assert tool_call.check({"name": "f", "arguments": {}, "x": 1}, {}) == message
    assert tool_call.check("f", {}) == message


# --------------------------------------------------------------------------- judge


class FakeJudge:
    """A JudgeFn: returns canned replies and records what it was asked."""

    def __init__(self, *replies: str):
        self.replies = list(replies)
        self.calls: list[tuple[list[dict[str, Any]], str]] = []

    async def __call__(self, messages: list[dict[str, Any]], alias: str) -> str:
        self.calls.append((messages, alias))
        return self.replies.pop(0)


async def test_judge_prompt_and_score() -> None:
    judge = FakeJudge("SCORE: 7\nREASON: mostly right, misses the date")
    the_case = case(
        "judge", "Deep Blue beat Kasparov in 1997", rubric="Must name the year.", judge_model="strong"
    )
    result = await get_scorer("judge").score(the_case, reply("Deep Blue won."), judge)
    assert result.value == pytest.approx(0.7) and not result.passed
    assert result.explanation == "judge strong: 7/10: mostly right, misses the date"
    messages, alias = judge.calls[0]
    assert alias == "strong"
    prompt = messages[-1]["content"]
    assert messages[0]["role"] == "system"
    for part in (
        "What is it?",
        "Deep Blue beat Kasparov in 1997",
        "Must name the year.",
        "Deep Blue won.",
        "SCORE:",
    ):
        assert part in prompt


async def test_judge_defaults_without_reference() -> None:
    judge = FakeJudge("Score: **10**/10")
    result = await get_scorer("judge").score(case("judge", None), reply("An answer"), judge)
    assert result.passed and result.explanation == "judge judge: 10/10"
    prompt = judge.calls[0][0][-1]["content"]
    assert "<reference_answer>" not in prompt and "10 means fully correct" in prompt
    assert judge.calls[0][1] == "judge"


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        ("SCORE: 8\nREASON: good", 8, "good"),
        ("score = 6.5\nreason: fine", 6.5, "fine"),
        ("<think>maybe SCORE: 2</think>SCORE: 9\nREASON: x", 9, "x"),
        ("I'd give it 4/10.", 4, ""),
        ("Score of 3 out of 10", 3, ""),
        (
            "SCORE: 4\nREASON: it would deserve a score of 10 if it named the year",
            4,
            "it would deserve a score of 10 if it named the year",
        ),
    ],
)
def test_parse_judge_reply(text: str, value: float, reason: str) -> None:
    assert parse_judge_reply(text) == (value, reason)


@pytest.mark.parametrize("text", ["Looks good to me!", "SCORE: 11\nREASON: great", ""])
def test_parse_judge_reply_unreadable_raises(text: str) -> None:
    with pytest.raises(ScorerError, match="judge"):
        parse_judge_reply(text)


async def test_judge_needs_a_judge_and_valid_options() -> None:
    with pytest.raises(ScorerError, match="needs a judge model"):
        await get_scorer("judge").score(case("judge", None), reply("x"))
    with pytest.raises(ScorerError, match="has no SCORE"):
        await get_scorer("judge").score(case("judge", None), reply("x"), FakeJudge("I like it"))
    assert get_scorer("judge").check(None, {"rubric": ""}) == "rubric must be a non-empty string"
    assert get_scorer("judge").check(None, {"judge_model": 3}) == "judge_model must be a non-empty string"


# --------------------------------------------------------------------------- custom


CUSTOM_MODULE = """
import asyncio
from composite_cli.evals.scorers import Score

def as_bool(output, expected, case):
    return output.strip() == expected

def as_number(output, expected, case):
    return 0.25

def as_tuple(output, expected, case):
    return (0.5, "half right")

def as_score(output, expected, case):
    return Score(1.0, "perfect")

async def as_async(output, expected, case):
    await asyncio.sleep(0)
    return case.options["threshold"] <= len(output)
as_async.options = {"threshold"}

def bad_type(output, expected, case):
    return "yes"

def out_of_range(output, expected, case):
    return 1.5

def raises(output, expected, case):
    raise KeyError("boom")

NOT_CALLABLE = 3
"""


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "my_eval_scorers.py").write_text(textwrap.dedent(CUSTOM_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(custom, "_CUSTOM", {})  # a scorer loaded before counts as allowed
    yield "my_eval_scorers"
    sys.modules.pop("my_eval_scorers", None)


@pytest.mark.parametrize(
    ("function", "value", "explanation"),
    [
        ("as_bool", 1.0, "my_eval_scorers:as_bool: pass"),
        ("as_number", 0.25, "my_eval_scorers:as_number: 0.25"),
        ("as_tuple", 0.5, "half right"),
        ("as_score", 1.0, "perfect"),
    ],
)
async def test_custom_scorer_return_types(
    custom_module: str, function: str, value: float, explanation: str
) -> None:
    name = f"{custom_module}:{function}"
    scorer = get_scorer(name, [custom_module])
    assert scorer.name == name and scorer.graded
    result = await scorer.score(case(name, "ok"), reply(" ok "))
    assert (result.value, result.explanation) == (value, explanation)


async def test_custom_scorer_async_with_declared_option(custom_module: str) -> None:
    scorer = get_scorer(f"{custom_module}:as_async", [custom_module])
    assert scorer.options == frozenset({"threshold"})
    assert (await scorer.score(case("x", None, threshold=2), reply("abc"))).passed
    assert not (await scorer.score(case("x", None, threshold=5), reply("abc"))).passed


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "bad_type",
            r"returned 'yes'; expected a bool, a number in \[0, 1\], \(number, explanation\) or a Score",
        ),
        ("out_of_range", r"returned 1.5, outside \[0, 1\]"),
        ("raises", r"raised KeyError: 'boom'"),
    ],
)
async def test_custom_scorer_bad_results_raise(custom_module: str, function: str, message: str) -> None:
    scorer = get_scorer(f"{custom_module}:{function}", [custom_module])
    with pytest.raises(ScorerError, match=message):
        await scorer.score(case("x", None), reply("abc"))


def test_custom_scorer_import_errors(custom_module: str) -> None:
    with pytest.raises(
        ScorerError, match="cannot import 'no_such_module_xyz' for scorer 'no_such_module_xyz:f'"
    ):
        get_scorer("no_such_module_xyz:f", ["no_such_module_xyz"])
    with pytest.raises(ScorerError, match="my_eval_scorers has no function 'missing'"):
        get_scorer(f"{custom_module}:missing", [custom_module])
    with pytest.raises(ScorerError, match="has no function 'NOT_CALLABLE'"):
        get_scorer(f"{custom_module}:NOT_CALLABLE", [custom_module])


@pytest.mark.parametrize("allow", [[], ["my_eval"], ["my_eval_scorers:as_number"], ["os"]])
def test_custom_scorer_outside_the_allowance_is_refused_unimported(
    custom_module: str, allow: list[str]
) -> None:
    with pytest.raises(ScorerError, match="'my_eval_scorers:as_bool' names Python code"):
        get_scorer(f"{custom_module}:as_bool", allow)
    assert custom_module not in sys.modules


def test_builtin_scorers_need_no_allowance() -> None:
    assert get_scorer("numeric").name == "numeric"
