"""`call`: one model call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import CALL_FIELDS, COMMON_FIELDS, CallSettings, Step
from composite_cli.engine.values import TextValue
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("call")
class CallStep(Step):
    FIELDS = COMMON_FIELDS | CALL_FIELDS
    settings: CallSettings

    @classmethod
    def parse(
        cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool
    ) -> CallStep:
        step = cls()
        step.init_common(node, pc, where, names)
        step.settings = CallSettings.parse(node, pc, where, names)
        return step

    def aliases(self) -> list[str]:
        return [self.settings.model]

    def summary(self) -> str:
        return f"model={self.settings.model}"

    async def run(self, rt: StepRuntime) -> TextValue:
        record = await rt.call(self.settings, name=self.id, final=rt.final)
        return TextValue.from_call(record)
