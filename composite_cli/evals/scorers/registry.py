"""The registry of scorers (a dotted.Registry, like step kinds' and tools'): the built-ins by
name, and `get_scorer`, which also resolves dotted paths.

The built-ins are listed here, not registered as an import side effect, so the set of names a
line may use is in one place."""

from __future__ import annotations

from collections.abc import Iterable

from composite_cli.dotted import DottedPathError, Registry
from composite_cli.evals.scorers.base import Scorer, ScorerError
from composite_cli.evals.scorers.choice import ChoiceScorer
from composite_cli.evals.scorers.custom import load_custom
from composite_cli.evals.scorers.judge import JudgeScorer
from composite_cli.evals.scorers.numeric import NumericScorer
from composite_cli.evals.scorers.structured import JsonScorer, ToolCallScorer
from composite_cli.evals.scorers.text import ContainsScorer, ExactScorer, RegexScorer

# The built-ins by name (a Mapping); any other name is `package.module:function`, loaded by
# load_custom (which caches what it loaded) when the user allowed its module.
SCORERS: Registry[Scorer] = Registry("scorer", load=load_custom)
for _scorer in (
    ExactScorer(),
    ContainsScorer(),
    RegexScorer(),
    ChoiceScorer(),
    NumericScorer(),
    JsonScorer(),
    ToolCallScorer(),
    JudgeScorer(),
):
    SCORERS.add(_scorer.name, _scorer)


def get_scorer(name: str, allow: Iterable[str] = ()) -> Scorer:
    """The scorer called `name`: a built-in (`SCORERS`) or `package.module:function`, which is
    imported only when an entry of `allow` (the user's `--allow-code` / `allow_code:`) covers it.

    Raises ScorerError for an unknown name, a custom scorer that is not allowed, or one that
    cannot be imported."""
    try:
        return SCORERS.resolve(name, allow)
    except DottedPathError as exc:
        raise ScorerError(exc.reason) from None
