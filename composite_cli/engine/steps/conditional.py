"""`if`: run the `then` steps or the `else` steps, depending on a condition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import COMMON_FIELDS, Step, value_names
from composite_cli.engine.templates import Condition
from composite_cli.engine.values import TextValue
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("if")
class IfStep(Step):
    FIELDS = COMMON_FIELDS | {"when", "then", "else"}
    when: Condition | None
    then: list[Step]
    otherwise: list[Step]

    @classmethod
    def parse(cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool) -> IfStep:
        step = cls()
        step.init_common(node, pc, where, names)
        if "when" not in node:
            pc.error(node, None, f"{where}.when", "is required (a condition over earlier outputs)")
        step.when = pc.condition(node, "when", where, names)
        if "then" not in node:
            pc.error(node, None, f"{where}.then", "is required (the steps to run when the condition holds)")
            step.then = []
        else:
            step.then = pc.steps(node["then"], f"{where}.then", names, in_loop=in_loop)
        step.otherwise = (
            pc.steps(node["else"], f"{where}.else", names, in_loop=in_loop) if "else" in node else []
        )
        return step

    def children(self) -> list[list[Step]]:
        return [self.then, self.otherwise] if self.otherwise else [self.then]

    def passes_value_to(self) -> set[str]:
        names: set[str] = set()
        for branch in (self.then, self.otherwise):
            if branch:
                names |= value_names(branch[-1])
        return names

    def summary(self) -> str:
        return f"when={self.when.source!r}" if self.when else ""

    async def run(self, rt: StepRuntime) -> Any:
        holds = self.when is not None and self.when.evaluate(rt.variables())
        branch = self.then if holds else self.otherwise
        rt.note(f"condition {'held' if holds else 'did not hold'}")
        if not branch:
            return TextValue("")
        return await rt.run_steps(branch, rt.scope.child(), final=rt.final)
