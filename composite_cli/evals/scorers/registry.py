"""The registry: built-in scorers by name, and `get_scorer`, which also resolves dotted paths.

The built-ins are listed here, not registered as an import side effect, so the set of names a
line may use is in one place."""

from __future__ import annotations

from collections.abc import Iterable

from composite_cli.evals.scorers.base import Scorer, ScorerError
from composite_cli.evals.scorers.choice import ChoiceScorer
from composite_cli.evals.scorers.custom import DOTTED_PATH, load_custom
from composite_cli.evals.scorers.judge import JudgeScorer
from composite_cli.evals.scorers.numeric import NumericScorer
from composite_cli.evals.scorers.structured import JsonScorer, ToolCallScorer
from composite_cli.evals.scorers.text import ContainsScorer, ExactScorer, RegexScorer

SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in (
        ExactScorer(),
        ContainsScorer(),
        RegexScorer(),
        ChoiceScorer(),
        NumericScorer(),
        JsonScorer(),
        ToolCallScorer(),
        JudgeScorer(),
    )
}


def get_scorer(name: str, allow: Iterable[str] = ()) -> Scorer:
    """The scorer called `name`: a built-in (`SCORERS`) or `package.module:function`, which is
    imported only when an entry of `allow` (the user's `--allow-code` / `allow_code:`) covers it.

    Raises ScorerError for an unknown name, a custom scorer that is not allowed, or one that
    cannot be imported."""
    if name in SCORERS:
        return SCORERS[name]
    if DOTTED_PATH.match(name):
        return load_custom(name, allow)
    known = ", ".join(sorted(SCORERS))
    raise ScorerError(f"unknown scorer {name!r} (built-ins: {known}; or give package.module:function)")
