"""`if`: run the `then` steps or the `else` steps, depending on a condition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composite_cli.engine.registry import step_kind
from composite_cli.engine.steps.base import Step, value_names
from composite_cli.engine.steps.fields import body, declare
from composite_cli.engine.templates import Condition
from composite_cli.engine.values import TextValue

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("if")
@dataclass(eq=False)
class IfStep(Step):
    """Runs `then` when the condition holds, else `else`; its value is the branch's last step's."""

    when: Condition | None = declare(
        "condition", "a condition over earlier outputs", required=True, show=True
    )
    then: list[Step] = body("the steps to run when the condition holds", required=True)
    otherwise: list[Step] = body("the steps to run when it does not", key="else")

    def children(self) -> list[list[Step]]:
        return [self.then, self.otherwise] if self.otherwise else [self.then]

    def passes_value_to(self) -> set[str]:
        names: set[str] = set()
        for branch in (self.then, self.otherwise):
            if branch:
                names |= value_names(branch[-1])
        return names

    async def run(self, rt: StepRuntime) -> Any:
        holds = self.when is not None and self.when.evaluate(rt.variables())
        branch = self.then if holds else self.otherwise
        rt.note(f"condition {'held' if holds else 'did not hold'}")
        if not branch:
            return TextValue("")
        return await rt.run_steps(branch, rt.scope.child(), final=rt.final)
