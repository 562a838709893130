"""`fanout`: several model calls in parallel (differently prompted experts, or n samples)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composite_cli.calls import describe_error
from composite_cli.engine.lifecycle import StepEndedEarly
from composite_cli.engine.prompts import AGGREGATE
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.base import MAX_SAMPLES, Step
from composite_cli.engine.steps.call_settings import CALL_FIELDS, CallSettings, call_fields, read_call
from composite_cli.engine.steps.fields import Decl, decl_of, declare, number, step_ref
from composite_cli.engine.templates import Template
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.errors import CompositeError, FanoutFailed
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

_EXPERT_FIELDS = set(CALL_FIELDS | {"name"}) - {"retries", "backoff"}
_REFERENCE_TEMPLATE = Template.compile(AGGREGATE, {"candidates"})
# What one expert's call gives: its answer, or the exception of its failed call (counted, not raised).
Answer = TextValue | BaseException


@step_kind("fanout")
@dataclass(eq=False)
class FanoutStep(Step):
    """Experts answer in parallel. Failed experts are recorded; the step needs `min_success`."""

    settings: CallSettings = call_fields(
        "call fields, inherited by every expert", scope=("expert", "sample"), hook=True
    )
    experts: list[tuple[str, CallSettings]] = declare(
        "custom",
        "`[{name, model, system, prompt, ...}]`: differently prompted experts, each with call fields "
        "but `retries` and `backoff`",
        hook=True,
        default_factory=list,
    )
    samples: int | ParamRef | None = number(
        "samples of one model, instead of experts",
        None,
        integer=True,
        minimum=1,
        maximum=MAX_SAMPLES,
        key="n",
    )
    min_success: int | ParamRef = number("answers the step needs", 1, integer=True, minimum=1)
    quorum: int | ParamRef | None = number(
        "answers after which the step stops waiting for the rest (all of them when not given)",
        None,
        integer=True,
        minimum=1,
        maximum=MAX_SAMPLES,
    )
    grace: float | ParamRef = number(
        "seconds to wait for the rest once `quorum` answered; later ones are cancelled",
        0.0,
        minimum=0,
    )
    references: str | None = step_ref(
        "a step whose answers every expert is shown as `{{ candidates }}`: MoA's middle layers"
    )

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        where = self.where
        shared = decl_of(type(self), "settings")
        inner = names | ({"candidates"} if self.references else set())
        experts = node.get("experts")
        if experts is not None and "n" in node:
            pc.error(node, "n", f"{where}.n", "give either experts or n (samples of one model), not both")
        if experts is not None:
            self.samples = None
            # Step-level call fields are checked once, here, and inherited by every expert.
            self.settings = read_call(shared, node, pc, where, inner, require_model=False)
            if not isinstance(experts, list) or not experts:
                pc.error(node, "experts", f"{where}.experts", "must be a non-empty list of experts")
            else:
                self._read_experts(experts, pc, shared, inner)
        else:
            if "n" not in node:
                pc.error(node, None, f"{where}.experts", "a fanout needs experts (a list) or n (samples)")
            self.settings = read_call(shared, node, pc, where, inner)
            self.experts = [("sample", self.settings)]
        if isinstance(self.min_success, int) and isinstance(self.quorum, int):
            if self.quorum < self.min_success:
                pc.error(
                    node,
                    "quorum",
                    f"{where}.quorum",
                    f"is {self.quorum} but min_success is {self.min_success}: the step could never "
                    "stop waiting with enough answers",
                )
        if isinstance(self.min_success, int) and self.samples is None and self.experts:
            if self.min_success > len(self.experts):
                pc.error(
                    node,
                    "min_success",
                    f"{where}.min_success",
                    f"is {self.min_success} but there are only {len(self.experts)} experts",
                )

        width = len(self.experts) if self.samples is None else self.samples
        if isinstance(self.quorum, int) and isinstance(width, int) and self.experts and self.quorum > width:
            pc.error(
                node,
                "quorum",
                f"{where}.quorum",
                f"is {self.quorum} but the step makes only {width} calls (a quorum of all of them is the "
                "default: leave quorum out)",
            )

    def _read_experts(self, experts: list[object], pc: ParseContext, shared: Decl, inner: set[str]) -> None:
        seen: set[str] = set()
        for i, expert in enumerate(experts):
            here = f"{self.where}.experts[{i}]"
            if not isinstance(expert, LineDict):
                pc.error(experts, i, here, "must be a mapping (name, model, system, ...)")
                continue
            pc.check_keys(expert, _EXPERT_FIELDS, here)
            name = pc.string(expert, "name", here) or f"expert{i + 1}"
            if name in seen:
                pc.error(expert, "name", f"{here}.name", f"duplicate expert name {name!r}")
            seen.add(name)
            self.experts.append((name, read_call(shared, expert, pc, here, inner, inherit=self.settings)))

    def aliases(self) -> list[str]:
        out: list[str] = []
        for _, settings in self.experts:
            if settings.model and settings.model not in out:
                out.append(settings.model)
        return out

    def summary(self) -> str:
        waits = "" if self.quorum is None else f" quorum={self.quorum} grace={self.grace}"
        if self.samples is not None:
            model = self.experts[0][1].model
            return f"n={self.samples} model={model} min_success={self.min_success}{waits}"
        names = ", ".join(f"{n}({s.model})" for n, s in self.experts)
        return f"experts: {names}; min_success={self.min_success}{waits}"

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

        async def one(name: str, settings: CallSettings, index: int) -> TextValue:
            variables = {"expert": name, "sample": index}
            system = None
            if refs is not None:
                variables["candidates"] = refs
                own = rt.render(settings.system, **variables)
                block = _REFERENCE_TEMPLATE.render({"candidates": refs})
                system = f"{own}\n\n{block}" if own else block
            record = await rt.call(settings, name=name, variables=variables, system=system, cache_salt=name)
            return TextValue.from_call(record)

        finished, _ = await self.gather_answers(
            rt, [(name, one(name, settings, index)) for name, settings, index in jobs]
        )
        values: list[TextValue] = []
        names: list[str] = []
        errors: list[str] = []
        for name, result in finished:  # a late answer is not here: its call is recorded `cancelled`
            if isinstance(result, BaseException):
                errors.append(f"{name}: {describe_error(result)}")
                rt.note(f"expert {name} failed: {describe_error(result)}")
            else:
                values.append(result)
                names.append(name)
        if len(values) < needed:
            raise FanoutFailed(self.id, len(values), needed, errors)
        return Candidates(values, names)

    async def gather_answers(
        self, rt: StepRuntime, jobs: list[tuple[str, Coroutine[Any, Any, TextValue]]]
    ) -> tuple[list[tuple[str, Answer]], list[str]]:
        """Run `jobs` (name, call) at once under this step's `quorum` and `grace`: once `quorum`
        of them answered, wait up to `grace` seconds for the rest, then cancel the late ones (their
        calls are recorded `cancelled`; the scratchpad names them). Returns the (name, answer or
        failure) of those that finished, in job order, and the names of those cancelled. A failed
        call is an answer's failure (recorded by calls, counted by the caller); a CompositeError (a
        run limit, a template error) or a StepEndedEarly (client tool calls handed back) ends the
        step: it cancels the others and goes on. Used by the fan-out and by each round of a debate."""
        needed = int(rt.resolve(self.min_success))
        # A quorum below min_success (possible through request params) would stop too early.
        asked = len(jobs) if self.quorum is None else max(int(rt.resolve(self.quorum)), needed)
        quorum = min(asked, len(jobs))
        grace = float(rt.resolve(self.grace))
        tasks = [asyncio.create_task(_settle(call)) for _, call in jobs]
        await wait_for_quorum(tasks, quorum, grace)
        finished: list[tuple[str, Answer]] = []
        cut: list[str] = []
        for (name, _), task in zip(jobs, tasks, strict=True):
            if task.cancelled():
                cut.append(name)
            else:
                finished.append((name, task.result()))
        if cut:
            rt.note(f"quorum {quorum} answered; cancelled after a grace of {grace:g}s: " + ", ".join(cut))
        return finished, cut


async def _settle(call: Coroutine[Any, Any, TextValue]) -> Answer:
    """One expert's call: its answer, or the exception of a failed call (returned, to count)."""
    try:
        return await call
    except (CompositeError, StepEndedEarly):
        raise  # limits, template errors and client tool calls end the step, not just this expert
    except Exception as exc:  # noqa: BLE001 - a failed expert is recorded by calls and counted by the caller
        return exc


async def wait_for_quorum(
    tasks: list[asyncio.Task[Answer]], quorum: int, grace: float
) -> set[asyncio.Task[Answer]]:
    """Wait until `quorum` tasks answered (a task that returns an exception, a failed call, does not
    count) or all ended, then up to `grace` seconds for the rest; cancel what is still running,
    wait for it to record itself, and return it. An exception a task raises (a run limit, a
    template error), in either wait, cancels every other task at once and goes on."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[Answer]] = set(tasks)
    answered = 0
    until: float | None = None  # the end of the grace, once the quorum answered
    try:
        while pending:
            timeout = None
            if answered >= quorum:
                until = loop.time() + grace if until is None else until
                timeout = until - loop.time()
                if timeout <= 0:
                    break
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            ended = [task for task in done if not task.cancelled()]
            raised = [error for error in (task.exception() for task in ended) if error is not None]
            if raised:
                raise raised[0]
            answered += sum(1 for task in ended if not isinstance(task.result(), BaseException))
    finally:
        for task in pending:
            task.cancel()
        if pending:
            # Let each cancelled call record itself (`cancelled`) before the step goes on.
            await asyncio.gather(*pending, return_exceptions=True)
    return pending
