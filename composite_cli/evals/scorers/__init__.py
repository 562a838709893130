"""Scorers: turn one eval case and the assistant message a mode returned into a Score in [0, 1].

Each scorer is a small class registered by name in `SCORERS`; a line of an eval file names one
(`"scorer": "numeric"`) or gives a dotted path to a custom function (`package.module:function`).
A scorer also checks its part of a case at load time (`check`), so a bad `expected` or option is
reported with its file and line before any model is called.

Text scorers read the message's `content` with any `<think>...</think>` block removed (reasoning
models put their scratchpad there; it is not the answer). Normalization differs per scorer on
purpose and is documented on each class.

Modules: `base` (Score, Scorer, ScorerError, JudgeFn, reading the answer), `text` (exact,
contains, regex), `choice`, `numeric`, `structured` (json, tool_call), `judge`, `custom` (dotted
paths) and `registry` (SCORERS, get_scorer).
"""

from composite_cli.evals.scorers.base import JudgeFn, Score, Scorer, ScorerError, answer_text
from composite_cli.evals.scorers.choice import choose_letter
from composite_cli.evals.scorers.judge import judge_prompt, parse_judge_reply
from composite_cli.evals.scorers.numeric import find_numbers, pick_number
from composite_cli.evals.scorers.registry import SCORERS, get_scorer
from composite_cli.evals.scorers.structured import extract_json, match_value
from composite_cli.evals.scorers.text import fold, normalize_exact

__all__ = [
    "SCORERS",
    "JudgeFn",
    "Score",
    "Scorer",
    "ScorerError",
    "answer_text",
    "choose_letter",
    "extract_json",
    "find_numbers",
    "fold",
    "get_scorer",
    "judge_prompt",
    "match_value",
    "normalize_exact",
    "parse_judge_reply",
    "pick_number",
]
