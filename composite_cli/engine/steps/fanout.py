"""`fanout`: several model calls in parallel (differently prompted experts, or n samples)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from composite_cli.calls import describe_error
from composite_cli.engine.prompts import AGGREGATE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.base import CALL_FIELDS, COMMON_FIELDS, MAX_SAMPLES, CallSettings, Step
from composite_cli.engine.templates import Template
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.errors import CompositeError, FanoutFailed
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

_EXPERT_FIELDS = (CALL_FIELDS | {"name"}) - {"retries", "backoff"}
_REFERENCE_TEMPLATE = Template.compile(AGGREGATE, {"candidates"})


@step_kind("fanout")
class FanoutStep(Step):
    """Experts answer in parallel. Failed experts are recorded; the step needs `min_success`."""

    FIELDS = COMMON_FIELDS | CALL_FIELDS | {"experts", "n", "min_success", "references"}
    experts: list[tuple[str, CallSettings]]
    samples: int | ParamRef | None
    min_success: int | ParamRef
    references: str | None

    @classmethod
    def parse(
        cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool
    ) -> FanoutStep:
        step = cls()
        step.init_common(node, pc, where, names)
        step.references = pc.step_ref(node, "references", where, names, required=False)
        inner = names | {"expert", "sample"} | ({"candidates"} if step.references else set())
        step.experts = []
        step.samples = None
        experts = node.get("experts")
        if experts is not None and "n" in node:
            pc.error(node, "n", f"{where}.n", "give either experts or n (samples of one model), not both")
        if experts is not None:
            # Step-level call fields are checked once, here, and inherited by every expert.
            shared = CallSettings.parse(node, pc, where, inner, require_model=False)
            if not isinstance(experts, list) or not experts:
                pc.error(node, "experts", f"{where}.experts", "must be a non-empty list of experts")
            else:
                seen: set[str] = set()
                for i, expert in enumerate(experts):
                    here = f"{where}.experts[{i}]"
                    if not isinstance(expert, LineDict):
                        pc.error(experts, i, here, "must be a mapping (name, model, system, ...)")
                        continue
                    pc.check_keys(expert, _EXPERT_FIELDS, here)
                    name = pc.string(expert, "name", here) or f"expert{i + 1}"
                    if name in seen:
                        pc.error(expert, "name", f"{here}.name", f"duplicate expert name {name!r}")
                    seen.add(name)
                    settings = CallSettings.parse(expert, pc, here, inner, inherit=shared)
                    step.experts.append((name, settings))
        else:
            step.samples = pc.number(node, "n", where, None, integer=True, minimum=1, maximum=MAX_SAMPLES)
            if "n" not in node:
                pc.error(node, None, f"{where}.experts", "a fanout needs experts (a list) or n (samples)")
            settings = CallSettings.parse(node, pc, where, inner)
            step.experts = [("sample", settings)]
        step.min_success = pc.number(node, "min_success", where, 1, integer=True, minimum=1)
        if isinstance(step.min_success, int) and step.samples is None and step.experts:
            if step.min_success > len(step.experts):
                pc.error(
                    node,
                    "min_success",
                    f"{where}.min_success",
                    f"is {step.min_success} but there are only {len(step.experts)} experts",
                )
        return step

    def aliases(self) -> list[str]:
        out: list[str] = []
        for _, settings in self.experts:
            if settings.model and settings.model not in out:
                out.append(settings.model)
        return out

    def summary(self) -> str:
        if self.samples is not None:
            return f"n={self.samples} model={self.experts[0][1].model} min_success={self.min_success}"
        names = ", ".join(f"{n}({s.model})" for n, s in self.experts)
        return f"experts: {names}; min_success={self.min_success}"

    def _jobs(self, rt: StepRuntime) -> list[tuple[str, CallSettings, int]]:
        if self.samples is None:
            return [(name, settings, i + 1) for i, (name, settings) in enumerate(self.experts)]
        n = int(rt.resolve(self.samples))
        settings = self.experts[0][1]
        return [(f"sample{i + 1}", settings, i + 1) for i in range(n)]

    async def run(self, rt: StepRuntime) -> Candidates:
        jobs = self._jobs(rt)
        needed = int(rt.resolve(self.min_success))
        refs: Any = rt.scope.get(self.references) if self.references else None
        if refs is not None and not isinstance(refs, Candidates):
            refs = Candidates([TextValue(str(refs))], [self.references or ""])

        async def one(name: str, settings: CallSettings, index: int) -> TextValue | BaseException:
            variables = {"expert": name, "sample": index}
            system = None
            if refs is not None:
                variables["candidates"] = refs
                own = rt.render(settings.system, **variables)
                block = _REFERENCE_TEMPLATE.render({"candidates": refs})
                system = f"{own}\n\n{block}" if own else block
            try:
                record = await rt.call(
                    settings, name=name, variables=variables, system=system, cache_salt=name
                )
            except CompositeError:
                raise  # limits and template errors end the run, not just this expert
            except Exception as exc:  # noqa: BLE001 - a failed expert is recorded by calls and counted here
                return exc
            return TextValue.from_call(record)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(name, settings, index)) for name, settings, index in jobs]
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None  # e.g. a run limit: end the run with that error
        values: list[TextValue] = []
        names: list[str] = []
        errors: list[str] = []
        for (name, _, _), task in zip(jobs, tasks, strict=True):
            result = task.result()
            if isinstance(result, BaseException):
                errors.append(f"{name}: {describe_error(result)}")
                rt.note(f"expert {name} failed: {describe_error(result)}")
            else:
                values.append(result)
                names.append(name)
        if len(values) < needed:
            raise FanoutFailed(self.id, len(values), needed, errors)
        return Candidates(values, names)
