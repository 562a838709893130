"""`synthesize`: aggregate candidate answers into one (Together MoA's aggregator)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composite_cli.engine.prompts import AGGREGATE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.call_settings import CALL_FIELDS, CallSettings, call_fields
from composite_cli.engine.steps.fields import declare, step_refs
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


def gather_candidates(rt: StepRuntime, sources: list[str]) -> Candidates:
    """The answers of the `from:` steps, as one numbered list."""
    values: list[TextValue] = []
    names: list[str] = []
    for ref in sources:
        value: Any = rt.scope.get(ref)
        if isinstance(value, Candidates):
            values.extend(value)
            names.extend(value.names)
        elif value is not None:
            values.append(value if isinstance(value, TextValue) else TextValue(str(value)))
            names.append(ref)
    return Candidates(values, names)


SOURCES = "the step whose answers to use, or a list of them"  # `from:` of synthesize and vote


class ShownCandidates(Candidates):
    """Candidates as a model is shown them: numbered 1..N, and with `anonymize: false` each one
    also names its source (`2. (analyst) ...`)."""

    def __init__(self, values: list[TextValue], names: list[str], *, named: bool):
        super().__init__(values, names)
        self.named = named

    def __str__(self) -> str:
        if not self.named:
            return super().__str__()
        rows = zip(self, self.names, strict=True)
        return "\n\n".join(f"{i}. ({name}) {text}" for i, (text, name) in enumerate(rows, start=1))


def shuffle_field() -> Any:
    return declare(
        "boolean",
        "show the candidates in a random order (seeded per run, recorded in the scratchpad)",
        True,
        param=False,
    )


def anonymize_field() -> Any:
    return declare(
        "boolean",
        "show the candidates by number only; false adds each one's source name",
        True,
        param=False,
    )


def candidate_seed(rt: StepRuntime, candidates: Candidates) -> int:
    """The shuffle's seed: from the run's cache salt (the eval repeat), the step and the candidates'
    texts, so a run is reproducible and an identical request replays from the call cache."""
    digest = hashlib.sha256()
    for part in (str(getattr(rt.ctx, "cache_salt", "") or ""), rt.step.id, *candidates):
        digest.update(part.encode("utf-8", "replace") + b"\0")
    return int.from_bytes(digest.digest()[:4], "big")


def present_candidates(
    rt: StepRuntime, candidates: Candidates, *, shuffle: bool, anonymize: bool
) -> ShownCandidates:
    """The candidates in the order and form a synthesizer or judge sees them (position and name
    bias: shuffled and anonymous by default). The seed, the order and each label's source go to the
    step's scratchpad; the returned list's `names` still hold the sources, for the caller."""
    order = list(range(len(candidates)))
    if shuffle and len(order) > 1:
        seed = candidate_seed(rt, candidates)
        random.Random(seed).shuffle(order)
        rt.note(f"candidates shuffled (seed {seed})")
    shown = ShownCandidates(
        [candidates[i] for i in order], [candidates.names[i] for i in order], named=not anonymize
    )
    mapping = ", ".join(f"{n}={name}" for n, name in enumerate(shown.names, start=1))
    rt.note(f"candidates shown as: {mapping}")
    return shown


def call_problems(pc: ParseContext, where: str) -> bool:
    """True when a call field of the step at `where` was reported."""
    return any(e.field in {f"{where}.{key}" for key in CALL_FIELDS} for e in pc.errors)


@step_kind("synthesize")
@dataclass(eq=False)
class SynthesizeStep(Step):
    """Aggregates the candidates into one answer; the default system prompt is Together MoA's."""

    sources: list[str] = step_refs(SOURCES, key="from", required=True, show="from")
    settings: CallSettings = call_fields(defaults={"system": AGGREGATE}, scope=("candidates",), show=True)
    shuffle: bool = shuffle_field()
    anonymize: bool = anonymize_field()

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        used: set[str] = set()
        for template in (self.settings.system, self.settings.prompt):
            if template is not None:
                used |= template.names
        if "candidates" not in used and not call_problems(pc, self.where):
            pc.error(
                node,
                "system",
                f"{self.where}.system",
                "the candidates are never shown: use {{ candidates }} in system or prompt",
            )

    def aliases(self) -> list[str]:
        return [self.settings.model]

    async def run(self, rt: StepRuntime) -> TextValue:
        candidates = present_candidates(
            rt, gather_candidates(rt, self.sources), shuffle=self.shuffle, anonymize=self.anonymize
        )
        record = await rt.call(
            self.settings, name=self.id, final=rt.final, variables={"candidates": candidates}
        )
        return TextValue.from_call(record)
