"""`reflect`: critique a draft. Its value is the critique; `.ok` is true when nothing needs fixing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from composite_cli.engine.prompts import CRITIQUE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.steps.base import Step
from composite_cli.engine.steps.call_settings import CallSettings, call_fields
from composite_cli.engine.steps.fields import declare, step_ref
from composite_cli.engine.values import TextValue
from composite_cli.patterns import DataPattern, compile_pattern

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

_NO_ISSUES = r"\bNO ISSUES\b"


@step_kind("reflect")
@dataclass(eq=False)
class ReflectStep(Step):
    """The critic sees the conversation, the draft as the assistant's reply, then the critique prompt."""

    draft: str = step_ref("the step whose answer is critiqued", required=True, show=True)
    settings: CallSettings = call_fields(defaults={"prompt": CRITIQUE}, show=True)
    ok_when: DataPattern = declare(
        "pattern",
        "a case-insensitive regular expression that marks a critique with nothing to fix: sets `.ok`",
        _NO_ISSUES,
        show=True,
        default_factory=lambda: compile_pattern(_NO_ISSUES, "i"),
    )

    def aliases(self) -> list[str]:
        return [self.settings.model]

    async def run(self, rt: StepRuntime) -> TextValue:
        draft = str(rt.scope.get(self.draft))
        record = await rt.call(
            self.settings,
            name=self.id,
            final=rt.final,
            after=[{"role": "assistant", "content": draft}],
        )
        ok = bool(self.ok_when.search(record.text))
        rt.note("critique: nothing to fix" if ok else "critique: changes requested")
        return TextValue(
            record.text, message=record.message, finish_reason=record.finish_reason or "stop", ok=ok
        )
