"""`synthesize`: aggregate candidate answers into one (Together MoA's aggregator)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from composite_cli.engine.prompts import AGGREGATE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import CALL_FIELDS, COMMON_FIELDS, CallSettings, Step
from composite_cli.engine.templates import Template
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


def parse_sources(node: LineDict, pc: ParseContext, where: str, names: set[str]) -> list[str]:
    """`from:` one step id or a list of them."""
    raw = node.get("from")
    if raw is None:
        pc.error(node, None, f"{where}.from", "is required (the step whose answers to use)")
        return []
    refs = raw if isinstance(raw, list) else [raw]
    out = []
    for ref in refs:
        if not isinstance(ref, str):
            pc.error(node, "from", f"{where}.from", "must be a step id or a list of step ids")
        elif ref not in names:
            pc.error(node, "from", f"{where}.from", f"unknown step {ref!r} (no earlier step has this id)")
        else:
            out.append(ref)
    return out


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


@step_kind("synthesize")
class SynthesizeStep(Step):
    FIELDS = COMMON_FIELDS | CALL_FIELDS | {"from"}
    settings: CallSettings
    sources: list[str]

    @classmethod
    def parse(
        cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool
    ) -> SynthesizeStep:
        step = cls()
        step.init_common(node, pc, where, names)
        step.sources = parse_sources(node, pc, where, names)
        inner = names | {"candidates"}
        before = len(pc.errors)
        step.settings = CallSettings.parse(node, pc, where, inner)
        if step.settings.system is None and "system" not in node:
            step.settings.system = Template.compile(AGGREGATE, inner)
        used: set[str] = set()
        for template in (step.settings.system, step.settings.prompt):
            if template is not None:
                used |= template.names
        if "candidates" not in used and len(pc.errors) == before:
            pc.error(
                node,
                "system",
                f"{where}.system",
                "the candidates are never shown: use {{ candidates }} in system or prompt",
            )
        return step

    def aliases(self) -> list[str]:
        return [self.settings.model]

    def summary(self) -> str:
        return f"from={','.join(self.sources)} model={self.settings.model}"

    async def run(self, rt: StepRuntime) -> TextValue:
        candidates = gather_candidates(rt, self.sources)
        record = await rt.call(
            self.settings, name=self.id, final=rt.final, variables={"candidates": candidates}
        )
        return TextValue.from_call(record)
