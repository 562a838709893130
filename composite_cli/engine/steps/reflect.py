"""`reflect`: critique a draft. Its value is the critique; `.ok` is true when nothing needs fixing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from composite_cli.engine.prompts import CRITIQUE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParseContext
from composite_cli.engine.steps.base import CALL_FIELDS, COMMON_FIELDS, CallSettings, Step
from composite_cli.engine.templates import Template
from composite_cli.engine.values import TextValue
from composite_cli.patterns import DataPattern, PatternError, compile_pattern
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("reflect")
class ReflectStep(Step):
    """The critic sees the conversation, the draft as the assistant's reply, then the critique prompt."""

    FIELDS = COMMON_FIELDS | CALL_FIELDS | {"draft", "ok_when"}
    settings: CallSettings
    draft: str
    ok_when: DataPattern

    @classmethod
    def parse(
        cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool
    ) -> ReflectStep:
        step = cls()
        step.init_common(node, pc, where, names)
        step.draft = pc.step_ref(node, "draft", where, names, required=True) or ""
        step.settings = CallSettings.parse(node, pc, where, names)
        if step.settings.prompt is None and "prompt" not in node:
            step.settings.prompt = Template.compile(CRITIQUE, names)
        pattern = pc.string(node, "ok_when", where) or r"\bNO ISSUES\b"
        try:
            step.ok_when = compile_pattern(pattern, "i")  # from a mode file: matches are time-bounded
        except PatternError as exc:
            pc.error(node, "ok_when", f"{where}.ok_when", f"invalid regular expression: {exc}")
            step.ok_when = compile_pattern(r"\bNO ISSUES\b", "i")
        return step

    def aliases(self) -> list[str]:
        return [self.settings.model]

    def summary(self) -> str:
        return f"draft={self.draft} model={self.settings.model} ok_when={self.ok_when.pattern!r}"

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
