"""`switch`: run the steps of the case a string mode parameter names (a preset, a decision rule).

Unlike `if` over `params.NAME == '...'`, a value that names no case is refused, never a silent
fall into another branch: in the file (the parameter's default) it is a validation error, in a
request's `composite.params` a BadParameter naming that field, raised before any step of the case
runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import Step, value_names
from composite_cli.engine.steps.fields import declare, text
from composite_cli.errors import BadParameter
from composite_cli.yamlfile import LineDict, field_path

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


def _case_list(cases: list[str]) -> str:
    quoted = [repr(c) for c in cases]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else "".join(quoted)


@step_kind("switch")
@dataclass(eq=False)
class SwitchStep(Step):
    """Runs the steps of the case a string mode parameter names; its value is that case's last
    step's. A value with no case is an error naming the parameter, in the file and in a request."""

    param: str = text(
        "the name of a string mode parameter (declared in `params`)", "", required=True, show=True
    )
    cases: dict[str, list[Step]] = declare(
        "custom",
        "`{VALUE: [steps]}`: the steps to run for each value of the parameter",
        hook=True,
        default_factory=dict,
    )

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        where = field_path(self.where, "cases")
        raw = node.get("cases")
        if not isinstance(raw, LineDict) or not raw:
            pc.error(node, "cases" if "cases" in node else None, where, "must be a mapping of value to steps")
            return
        for value, steps in raw.items():
            if not isinstance(value, str) or not value:
                pc.error(raw, value, where, f"a case must be a non-empty string, got {value!r}")
                continue
            self.cases[value] = pc.steps(steps, f"{where}.{value}", names, in_loop=in_loop)
        if not self.param:
            return
        default = pc.params.get(self.param)
        declared = ", ".join(sorted(pc.params)) or "(none)"
        if self.param not in pc.params:
            pc.error(
                node,
                "param",
                field_path(self.where, "param"),
                f"unknown parameter {self.param!r} (declared: {declared})",
            )
        elif not isinstance(default, str):
            pc.error(
                node, "param", field_path(self.where, "param"), f"parameter {self.param!r} is not a string"
            )
        elif self.cases and default not in self.cases:
            pc.error(
                node,
                "param",
                field_path(self.where, "param"),
                f"parameter {self.param!r} defaults to {default!r}, which is not a case "
                f"({_case_list(list(self.cases))})",
            )

    def children(self) -> list[list[Step]]:
        return [steps for steps in self.cases.values() if steps]

    def passes_value_to(self) -> set[str]:
        names: set[str] = set()
        for steps in self.cases.values():
            if steps:
                names |= value_names(steps[-1])
        return names

    def summary(self) -> str:
        return f"param={self.param} cases={','.join(self.cases)}"

    async def run(self, rt: StepRuntime) -> Any:
        value = rt.params.get(self.param)
        steps = self.cases.get(value) if isinstance(value, str) else None
        if steps is None:
            raise BadParameter(
                f"parameter {self.param!r} must be {_case_list(list(self.cases))}, got {value!r}",
                f"composite.params.{self.param}",
            )
        rt.note(f"{self.param} = {value!r}")
        return await rt.run_steps(steps, rt.scope.child(), final=rt.final)
