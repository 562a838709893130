"""Custom scorers: a function named by a dotted path (`package.module:function`), wrapped as a
Scorer. An eval line may name one only when the user allowed its module (`--allow-code`,
`allow_code:` in the config); `--scorer` on the command line is the user's own choice."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from composite_cli.dotted import DOTTED_PATH, DottedPathError, import_callable
from composite_cli.evals.scorers.base import (
    EPS,
    JudgeFn,
    Score,
    Scorer,
    ScorerError,
    answer_text,
    is_number,
    shorten,
    show_number,
)

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalCase

__all__ = ["DOTTED_PATH", "CustomScorer", "load_custom"]


class CustomScorer(Scorer):
    """A function named `package.module:function`, called as function(output_text, expected,
    case), sync or async. It returns a bool, a number in [0, 1], (number, explanation) or a
    Score; anything else raises ScorerError. A `options` attribute on the function (a set of
    names) declares the extra line keys it reads from `case.options`. The module is imported
    from the installed packages / PYTHONPATH; the working directory is not added."""

    graded = True

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    async def score(self, case: EvalCase, message: dict[str, Any], judge: JudgeFn | None = None) -> Score:
        try:
            result = self.fn(answer_text(message), case.expected, case)
            if inspect.isawaitable(result):
                result = await result
        except ScorerError:
            raise
        except Exception as exc:
            raise ScorerError(f"custom scorer {self.name} raised {type(exc).__name__}: {exc}") from exc
        return self._to_score(result)

    def _to_score(self, result: Any) -> Score:
        if isinstance(result, Score):
            return result
        if isinstance(result, bool):
            return Score(float(result), f"{self.name}: {'pass' if result else 'fail'}")
        if is_number(result):
            return Score(self._value(result), f"{self.name}: {show_number(result)}")
        if (
            isinstance(result, tuple)
            and len(result) == 2
            and is_number(result[0])
            and isinstance(result[1], str)
        ):
            return Score(self._value(result[0]), result[1])
        raise ScorerError(
            f"custom scorer {self.name} returned {shorten(result)}; expected a bool, a number in "
            "[0, 1], (number, explanation) or a Score"
        )

    def _value(self, value: float) -> float:
        if not math.isfinite(value) or value < -EPS or value > 1 + EPS:
            raise ScorerError(f"custom scorer {self.name} returned {value!r}, outside [0, 1]")
        return float(value)


_CUSTOM: dict[str, Scorer] = {}


def load_custom(path: str, allow: Iterable[str] = ()) -> Scorer:
    """The scorer for `package.module:function`, imported once and cached by path.

    Raises ScorerError if no entry of `allow` covers the path (nothing is imported then), the
    module cannot be imported, the function is missing, or its `options` attribute is not a set
    of names. A scorer already loaded in this process (so allowed then) is returned from the
    cache: the eval runner looks cases' scorers up again by name."""
    if path in _CUSTOM:
        return _CUSTOM[path]
    try:
        fn = import_callable(path, "scorer", allow=allow)
    except DottedPathError as exc:
        raise ScorerError(exc.reason) from exc
    declared = getattr(fn, "options", ())
    if not isinstance(declared, (set, frozenset, list, tuple)) or not all(
        isinstance(o, str) for o in declared
    ):
        raise ScorerError(f"scorer {path!r}: its options attribute must be a set of names")
    cls = type(f"CustomScorer[{path}]", (CustomScorer,), {"name": path, "options": frozenset(declared)})
    scorer: Scorer = cls(fn)
    _CUSTOM[path] = scorer
    return scorer
