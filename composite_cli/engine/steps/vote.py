"""`vote`: pick one candidate, by majority over normalized answers or by a judge model."""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from composite_cli.engine.prompts import JUDGE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.call_settings import CALL_FIELDS, CallSettings, call_fields
from composite_cli.engine.steps.fields import decl_of, declare, read_field, step_refs
from composite_cli.engine.steps.synthesize import SOURCES, gather_candidates
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.errors import StepFailed
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    """Case, punctuation and whitespace folded, so 'Paris.' and ' paris' count as one answer."""
    return " ".join(text.lower().translate(_PUNCT).split())


def majority(candidates: Candidates) -> tuple[int, Counter[str]]:
    """Index of the winning candidate (ties: the earliest answer) and the tally."""
    keys = [normalize(c) for c in candidates]
    tally = Counter(keys)
    best = max(tally.values())
    for i, key in enumerate(keys):
        if tally[key] == best:
            return i, tally
    raise ValueError("no candidates")


@step_kind("vote")
@dataclass(eq=False)
class VoteStep(Step):
    """Picks one candidate: the most common normalized answer, or the one a judge model names."""

    sources: list[str] = step_refs(SOURCES, key="from", required=True, show="from")
    method: str = declare(
        "choice",
        "how to pick: `majority` (normalized answers, no model call) or `judge` (a model picks a "
        "numbered candidate)",
        "majority",
        choices=(("majority", ""), ("judge", "")),
        show=True,
    )
    settings: CallSettings | None = call_fields(
        "with `method: judge`, the judge's call fields",
        defaults={"prompt": JUDGE},
        scope=("candidates",),
        hook=True,
        show=True,
        value=None,
    )

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        method = node.get("method", "majority")
        if method == "judge":
            self.settings = read_field(decl_of(type(self), "settings"), node, pc, self.where, names)
        elif method == "majority":
            extra = sorted(set(node) & (CALL_FIELDS - {"model"}))
            if "model" in node or extra:
                key = "model" if "model" in node else extra[0]
                pc.error(
                    node, key, f"{self.where}.{key}", "a majority vote calls no model (use method: judge)"
                )

    def aliases(self) -> list[str]:
        return [self.settings.model] if self.settings else []

    async def run(self, rt: StepRuntime) -> TextValue:
        candidates = gather_candidates(rt, self.sources)
        if not candidates:
            raise StepFailed(f"step {self.id!r}: nothing to vote on")
        if self.settings is None:
            index, tally = majority(candidates)
            rt.note(f"majority tally: {dict(tally)}")
            return candidates[index]
        record = await rt.call(self.settings, name=self.id, variables={"candidates": candidates})
        match = re.search(r"\d+", record.text)
        choice = int(match.group()) if match else 0
        if 1 <= choice <= len(candidates):
            rt.note(f"judge picked candidate {choice}")
            return candidates[choice - 1]
        index, tally = majority(candidates)
        rt.note(f"judge reply {record.text[:80]!r} named no candidate; used majority {dict(tally)}")
        return candidates[index]
