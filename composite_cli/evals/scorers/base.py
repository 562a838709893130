"""What every scorer shares: the Score it returns, the Scorer interface, the error it raises, the
judge callback, and reading the answer text out of an assistant message."""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from composite_cli.engine.conversation import content_text
from composite_cli.errors import CompositeError

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase

JudgeFn = Callable[[list[dict[str, Any]], str], Awaitable[str]]
"""(messages, judge_alias) -> the judge model's reply text. The runner supplies it and traces and
costs the judge's calls separately from the mode's."""

EPS = 1e-9


class ScorerError(CompositeError):
    """A scorer is unknown, cannot be imported, or could not produce a score."""


@dataclass(frozen=True)
class Score:
    """One case's score: `value` in [0, 1] and a short explanation stored next to it."""

    value: float
    explanation: str

    def __post_init__(self) -> None:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ScorerError(f"a score must be a number in [0, 1], got {value!r}")
        if value < -EPS or value > 1 + EPS:
            raise ScorerError(f"a score must be in [0, 1], got {value!r}")
        # Clamp only float noise (0.1 * 10 and friends); real out-of-range values raised above.
        object.__setattr__(self, "value", float(min(1.0, max(0.0, value))))

    @property
    def passed(self) -> bool:
        """True only for a full score: a graded 0.7 counts towards the mean but not as a pass."""
        return self.value >= 1.0 - EPS


class Scorer(ABC):
    """A way to score an answer. Subclasses set `name`, the line options they read, and `graded`."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()
    graded: ClassVar[bool] = False  # True when scores are not just 0/1

    def check(self, expected: Any, options: dict[str, Any]) -> str | None:
        """The problem with this case's `expected` / options, found at load time, or None."""
        return None

    @abstractmethod
    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        """Score `message` (the assistant message the mode returned) against `case`."""


# --------------------------------------------------------------------------- reading the answer

_THINK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)


def strip_think(text: str) -> str:
    """`text` without any <think>...</think> block: reasoning models put their scratchpad there,
    and it is not the answer."""
    return _THINK.sub(" ", text)


def answer_text(message: dict[str, Any]) -> str:
    """The message's text content without any <think>...</think> block."""
    return strip_think(content_text(message.get("content"))).strip()


# --------------------------------------------------------------------------- small shared helpers


def is_number(value: Any) -> bool:
    """An int or float, but not a bool (JSON true is not 1 here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shorten(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for explanations."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_number(value: float) -> str:
    """A number for explanations: 415014 not 4.15014e+05, 3.75 not 3.7500000001."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def pass_fail(ok: bool, explanation: str) -> Score:
    """A 0/1 score."""
    return Score(1.0 if ok else 0.0, explanation)
