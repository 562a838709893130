"""`loop`: repeat its steps up to `max_rounds` times, or until a condition holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.base import Step, value_names
from composite_cli.engine.steps.fields import body, decl_of, declare, number, read_field, step_ref
from composite_cli.engine.templates import Condition
from composite_cli.engine.values import TextValue
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("loop")
@dataclass(eq=False)
class LoopStep(Step):
    """Repeats its steps; its value is `output`'s, or the last round's last step's."""

    max_rounds: int | ParamRef = number("the most rounds", 3, integer=True, minimum=0, show=True)
    steps: list[Step] = body("the steps to repeat", required=True, scope=("round",), loop_body=True)
    until: Condition | None = declare(
        "condition", "checked after each round: true ends the loop", scope=("round",), hook=True, show=True
    )
    output: str | None = step_ref("which step's value the loop returns", hook=True, show=True)

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        # `until` and `output` also see the body's steps.
        inner = names | {s.id for s in self.steps}
        cls = type(self)
        self.until = read_field(decl_of(cls, "until"), node, pc, self.where, inner)
        self.output = read_field(decl_of(cls, "output"), node, pc, self.where, inner | {"round"})

    def children(self) -> list[list[Step]]:
        return [self.steps]

    def _last_step_is_output(self) -> bool:
        return self.output is None or (bool(self.steps) and self.output in value_names(self.steps[-1]))

    async def run(self, rt: StepRuntime) -> Any:
        rounds = int(rt.resolve(self.max_rounds))
        scope = rt.scope.child()
        value: Any = None
        for round_number in range(1, rounds + 1):
            scope.set("round", round_number)
            # Only the last possible round's last step can be the caller's answer as it streams.
            final = rt.final and round_number == rounds and self._last_step_is_output()
            value = await rt.run_steps(self.steps, scope, final=final)
            if self.until is not None and self.until.evaluate(rt.variables(**scope.flat())):
                rt.note(f"stopped after round {round_number}: {self.until.source}")
                break
        if self.output is not None:
            try:
                return scope.get(self.output)
            except KeyError:
                return TextValue("")
        return value if value is not None else TextValue("")
