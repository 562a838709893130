"""Structured scorers: `json` (fields of a JSON object in the answer) and `tool_call` (the tool
the reply calls and its arguments), both comparing values with `match_value`."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from composite_cli.evals.scorers.base import JudgeFn, Score, Scorer, answer_text, is_number, shorten

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase


def _norm_str(value: str) -> str:
    return " ".join(value.casefold().split())


def match_value(expected: Any, got: Any) -> bool:
    """`got` matches `expected`: strings after folding case and whitespace, numbers by value
    (5 == 5.0, but not "5"), booleans and null exactly, lists item by item, objects as a subset
    (every expected key matches; extra keys in `got` are allowed)."""
    if isinstance(expected, bool) or expected is None:
        return got is expected
    if is_number(expected):
        return is_number(got) and math.isclose(float(got), float(expected), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str):
        return isinstance(got, str) and _norm_str(got) == _norm_str(expected)
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(match_value(e, g) for e, g in zip(expected, got, strict=True))
        )
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(k in got and match_value(v, got[k]) for k, v in expected.items())
    return bool(expected == got)


def _mismatches(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = []
    for key, want in expected.items():
        if key not in got:
            problems.append(f"{key}: missing")
        elif not match_value(want, got[key]):
            problems.append(f"{key}: got {shorten(got[key], 40)}, expected {shorten(want, 40)}")
    return problems


# --------------------------------------------------------------------------- json

_FENCE = re.compile(r"```[ \t]*(?:json[c5]?)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_json(text: str) -> Any:
    """The JSON value an answer gives: the whole text, else the first ``` fence (```json or
    plain) that parses, else the first {...} object in the text. Raises ValueError if none."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # a deeply nested answer is no answer
        pass
    for fence in _FENCE.finditer(text):
        try:
            return json.loads(fence.group(1))
        except (ValueError, RecursionError):
            continue
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            return decoder.raw_decode(text, start)[0]
        except (ValueError, RecursionError):
            continue
    raise ValueError("no JSON object in the answer")


class JsonScorer(Scorer):
    """The answer holds a JSON object (see `extract_json`) with the expected fields.

    `expected` is an object of field -> value; each field is compared with `match_value`
    (nested objects as subsets). Graded: the score is the fraction of fields that match.
    """

    name = "json"
    graded = True

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        if not isinstance(expected, dict) or not expected:
            return "expected must be a non-empty object of field -> value"
        return None

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        try:
            got = extract_json(answer_text(message))
        except ValueError as exc:
            return Score(0.0, str(exc))
        if not isinstance(got, dict):
            kind = "a list" if isinstance(got, list) else "a string" if isinstance(got, str) else "a value"
            return Score(0.0, f"the answer's JSON is {kind}, not an object")
        problems = _mismatches(case.expected, got)
        total = len(case.expected)
        matched = total - len(problems)
        why = f"{matched}/{total} fields match"
        return Score(matched / total, why + (f"; {'; '.join(problems)}" if problems else ""))


# --------------------------------------------------------------------------- tool_call


def tool_calls(message: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, raw arguments) of each tool call; accepts dicts or LiteLLM objects."""
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, dict) else getattr(call, "function", None)
        if isinstance(fn, dict):
            calls.append((str(fn.get("name") or ""), fn.get("arguments")))
        elif fn is not None:
            calls.append((str(getattr(fn, "name", "") or ""), getattr(fn, "arguments", None)))
    return calls


class ToolCallScorer(Scorer):
    """The reply calls the expected tool with the expected arguments.

    `expected` is {"name": ..., "arguments": {...}}. Any one of the reply's tool calls may match
    (parallel calls are allowed). `arguments` is a subset: each given argument must match by
    `match_value` (strings fold case and whitespace; numbers by value, so "250" != 250); extra
    arguments are fine. No tool call, a wrong name, or arguments that are not a JSON object -> 0.
    """

    name = "tool_call"

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        if (
            not isinstance(expected, dict)
            or set(expected) != {"name", "arguments"}
            or not isinstance(expected["name"], str)
            or not expected["name"]
            or not isinstance(expected["arguments"], dict)
        ):
            return 'expected must be {"name": "<tool>", "arguments": {...}}'
        return None

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        want_name = case.expected["name"]
        want_args = case.expected["arguments"]
        calls = tool_calls(message)
        if not calls:
            return Score(0.0, f"no tool call, expected {want_name}")
        reasons = []
        for name, raw in calls:
            if name != want_name:
                reasons.append(f"called {name}")
                continue
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
            except (ValueError, RecursionError):
                reasons.append(f"{name} arguments are not valid JSON")
                continue
            if not isinstance(args, dict):
                reasons.append(f"{name} arguments are not an object")
                continue
            problems = _mismatches(want_args, args)
            if not problems:
                return Score(1.0, f"called {name} with the expected arguments")
            reasons.append(f"{name}: {'; '.join(problems)}")
        return Score(0.0, f"{', '.join(reasons)}; expected {want_name}")
