"""The `judge` scorer: an LLM grades the answer 0-10 against a rubric; the score is n/10."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from composite_cli.evals.scorers.base import (
    JudgeFn,
    Score,
    Scorer,
    ScorerError,
    answer_text,
    shorten,
    show_number,
    strip_think,
)
from composite_cli.evals.scorers.structured import tool_calls

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase

JUDGE_SYSTEM = (
    "You are a careful, strict grader. You grade one answer to one question on a scale from 0 to "
    "10 and reply in the exact format you are given."
)
DEFAULT_RUBRIC = (
    "10 means fully correct and complete; 0 means wrong, missing or off-topic. If a reference "
    "answer is given, grade agreement with it. Ignore style and length."
)
_JUDGE_SCORE_LINE = re.compile(r"^\s*score\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE | re.MULTILINE)
_JUDGE_SCORE = re.compile(
    r"\bscore\b\s*(?:of|is|[:=])?\s*(\d+(?:\.\d+)?)(?:\s*/\s*10\b|\s*out\s+of\s+10\b)?", re.IGNORECASE
)
_JUDGE_FRACTION = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*10\b", re.IGNORECASE)
_JUDGE_REASON = re.compile(r"\breason\b\s*[:=]\s*(.+)", re.IGNORECASE)


def judge_prompt(question: str, reference: Any, rubric: str, answer: str) -> list[dict[str, Any]]:
    """The judge's messages: question, reference answer (if any), rubric, the answer to grade."""
    parts = ["Grade the answer below.", f"<question>\n{question}\n</question>"]
    if reference is not None:
        ref = reference if isinstance(reference, str) else json.dumps(reference, ensure_ascii=False)
        parts.append(f"<reference_answer>\n{ref}\n</reference_answer>")
    parts.append(f"<rubric>\n{rubric}\n</rubric>")
    parts.append(f"<answer>\n{answer}\n</answer>")
    parts.append(
        "Reply in exactly this format and nothing else:\nSCORE: <an integer from 0 to 10>\nREASON: <one line>"
    )
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def parse_judge_reply(reply: str) -> tuple[float, str]:
    """(score 0-10, reason) from a judge reply; raises ScorerError if it cannot be read.

    Takes the last line starting "SCORE: n", else the last "score: n" / "score of n" anywhere,
    else the last "n/10"."""
    text = strip_think(reply).replace("*", "")
    found = _JUDGE_SCORE_LINE.findall(text) or _JUDGE_SCORE.findall(text) or _JUDGE_FRACTION.findall(text)
    if not found:
        raise ScorerError(f"the judge's reply has no SCORE: {shorten(reply.strip(), 200)}")
    value = float(found[-1])
    if not 0 <= value <= 10:
        raise ScorerError(f"the judge's score {show_number(value)} is outside 0-10")
    reason = _JUDGE_REASON.search(text)
    return value, reason.group(1).strip() if reason else ""


class JudgeScorer(Scorer):
    """LLM-graded: a judge model scores the answer 0-10 against the rubric (and `expected` as a
    reference answer, if given); the score is n/10. Options `rubric` (text) and `judge_model`
    (a model alias, default "judge"). An unreadable judge reply raises ScorerError, never a
    silent 0. The question shown to the judge is the case's last user message."""

    name = "judge"
    options = frozenset({"rubric", "judge_model"})
    graded = True

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        for key in ("rubric", "judge_model"):
            if key in options and (not isinstance(options[key], str) or not options[key].strip()):
                return f"{key} must be a non-empty string"
        return None

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        if judge is None:
            raise ScorerError("the judge scorer needs a judge model, and none was given")
        alias = case.options.get("judge_model", "judge")
        answer = answer_text(message)
        calls = tool_calls(message)
        if calls:
            answer += "\n\nTool calls: " + "; ".join(f"{name}({args})" for name, args in calls)
        messages = judge_prompt(
            case.input_text, case.expected, case.options.get("rubric", DEFAULT_RUBRIC), answer
        )
        value, reason = parse_judge_reply(await judge(messages, alias))
        return Score(
            value / 10, f"judge {alias}: {show_number(value)}/10" + (f": {reason}" if reason else "")
        )
