"""`call`: one model call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from composite_cli.engine.registry import step_kind
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.call_settings import CallSettings, call_fields
from composite_cli.engine.values import TextValue

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("call")
@dataclass(eq=False)
class CallStep(Step):
    """One model call."""

    settings: CallSettings = call_fields("the call", show=True)

    def aliases(self) -> list[str]:
        return [self.settings.model]

    async def run(self, rt: StepRuntime) -> TextValue:
        record = await rt.call(self.settings, name=self.id, final=rt.final)
        return TextValue.from_call(record)
