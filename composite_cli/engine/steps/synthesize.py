"""`synthesize`: aggregate candidate answers into one (Together MoA's aggregator)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composite_cli.engine.prompts import AGGREGATE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.call_settings import CALL_FIELDS, CallSettings, call_fields
from composite_cli.engine.steps.fields import step_refs
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


def call_problems(pc: ParseContext, where: str) -> bool:
    """True when a call field of the step at `where` was reported."""
    return any(e.field in {f"{where}.{key}" for key in CALL_FIELDS} for e in pc.errors)


@step_kind("synthesize")
@dataclass(eq=False)
class SynthesizeStep(Step):
    """Aggregates the candidates into one answer; the default system prompt is Together MoA's."""

    sources: list[str] = step_refs(SOURCES, key="from", required=True, show="from")
    settings: CallSettings = call_fields(defaults={"system": AGGREGATE}, scope=("candidates",), show=True)

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
        candidates = gather_candidates(rt, self.sources)
        record = await rt.call(
            self.settings, name=self.id, final=rt.final, variables={"candidates": candidates}
        )
        return TextValue.from_call(record)
