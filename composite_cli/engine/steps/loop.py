"""`loop`: repeat its steps up to `max_rounds` times, or until a condition holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.base import COMMON_FIELDS, Step, value_names
from composite_cli.engine.templates import Condition
from composite_cli.engine.values import TextValue
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("loop")
class LoopStep(Step):
    FIELDS = COMMON_FIELDS | {"max_rounds", "until", "steps", "output"}
    max_rounds: int | ParamRef
    until: Condition | None
    steps: list[Step]
    output: str | None

    @classmethod
    def parse(
        cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool
    ) -> LoopStep:
        step = cls()
        step.init_common(node, pc, where, names)
        step.max_rounds = pc.number(node, "max_rounds", where, 3, integer=True, minimum=0)
        if "steps" not in node:
            pc.error(node, None, f"{where}.steps", "is required (the steps to repeat)")
            step.steps = []
        else:
            step.steps = pc.steps(node["steps"], f"{where}.steps", names | {"round"}, in_loop=True)
        inner = names | {"round"} | {s.id for s in step.steps}
        step.until = pc.condition(node, "until", where, inner)
        step.output = pc.step_ref(node, "output", where, inner, required=False)
        return step

    def children(self) -> list[list[Step]]:
        return [self.steps]

    def summary(self) -> str:
        until = f" until={self.until.source!r}" if self.until else ""
        return f"max_rounds={self.max_rounds}{until}" + (f" output={self.output}" if self.output else "")

    def _last_step_is_output(self) -> bool:
        return self.output is None or (bool(self.steps) and self.output in value_names(self.steps[-1]))

    async def run(self, rt: StepRuntime) -> Any:
        rounds = int(rt.resolve(self.max_rounds))
        body = rt.scope.child()
        value: Any = None
        for number in range(1, rounds + 1):
            body.set("round", number)
            # Only the last possible round's last step can be the caller's answer as it streams.
            final = rt.final and number == rounds and self._last_step_is_output()
            value = await rt.run_steps(self.steps, body, final=final)
            if self.until is not None and self.until.evaluate(rt.variables(**body.flat())):
                rt.note(f"stopped after round {number}: {self.until.source}")
                break
        if self.output is not None:
            try:
                return body.get(self.output)
            except KeyError:
                return TextValue("")
        return value if value is not None else TextValue("")
