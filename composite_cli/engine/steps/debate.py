"""`debate`: multi-agent debate (Du et al. 2023). The experts answer (round 0, a fan-out with its
`quorum` and `grace`), then for `rounds` rounds each one reads the others' latest answers
(anonymous, in a seeded random order recorded in the trace) after its own and revises. The value
is the last round's answers, for a judge (`synthesize`) or a `vote` to decide.

Each round is a child step (`round0`, `round1`, ...) holding its calls, so the timeline reads as
the debate went. Every round waits as the first answers do (`FanoutStep.gather_answers`): once
`quorum` revisions are in, up to `grace` seconds for the rest, then the late ones are cancelled
(recorded `cancelled`, named in the round's scratchpad). An expert whose revision fails or is
cancelled keeps its previous answer (noted); one cut from the first answers takes no further
part. A round needs `min_success` revisions, like the first answers.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composite_cli.calls import describe_error
from composite_cli.engine.registry import step_kind
from composite_cli.engine.spec import ParamRef, ParseContext, resolve
from composite_cli.engine.steps.call_settings import CallSettings
from composite_cli.engine.steps.fanout import FanoutStep
from composite_cli.engine.steps.fields import compile_default, declare, number
from composite_cli.engine.steps.synthesize import ShownCandidates, candidate_seed, shuffle_field
from composite_cli.engine.templates import Template
from composite_cli.engine.values import Candidates, TextValue
from composite_cli.errors import FanoutFailed
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

MAX_ROUNDS = 8
REVISE = (
    "Round {{ round }} of a discussion. Other experts answered the user's last message as "
    "follows:\n\n{{ others }}\n\nUsing their reasoning as additional information, examine your "
    "own answer (above) and theirs step by step, point out the mistakes you find, and give your "
    "updated answer in full."
)


@step_kind("debate")
@dataclass(eq=False)
class DebateStep(FanoutStep):
    """Experts answer (a fan-out), then for `rounds` rounds each reads the others' latest answers
    (anonymous, shuffled) and revises; `quorum` and `grace` hold in every round (a cancelled
    revision leaves its expert's last answer). The value is the last round's answers, for a judge
    or a vote."""

    rounds: int | ParamRef = number(
        "rounds of reading the others' answers and revising", 2, integer=True, minimum=0, maximum=MAX_ROUNDS
    )
    revise: Template | None = declare(
        "template",
        "each revision's prompt, after the expert's own last answer",
        scope=("others", "round", "expert", "sample"),
        note="a built-in prompt when none is given",
    )
    shuffle: bool = shuffle_field()

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        super().finish(node, pc, names, in_loop=in_loop)
        if self.references:
            pc.error(node, "references", f"{self.where}.references", "a debate's experts read each other")
        if self.revise is None:
            self.revise = compile_default(REVISE, names | {"others", "round", "expert", "sample"})
        elif "others" not in self.revise.names:
            pc.error(
                node,
                "revise",
                f"{self.where}.revise",
                "the others' answers are never shown: use {{ others }} in revise",
            )

    def summary(self) -> str:
        return f"{super().summary()} rounds={self.rounds}"

    def expected_calls(self, params: Mapping[str, Any]) -> tuple[int, int | None]:
        experts = int(resolve(self.samples, params)) if self.samples is not None else len(self.experts)
        total = experts * (int(resolve(self.rounds, params)) + 1)
        return total, total

    async def run(self, rt: StepRuntime) -> Candidates:
        answers = await self._round(rt, 0, None)
        for round_no in range(1, int(rt.resolve(self.rounds)) + 1):
            answers = await self._round(rt, round_no, answers)
        return answers

    async def _round(self, rt: StepRuntime, round_no: int, previous: Candidates | None) -> Candidates:
        async with rt.child_step(kind="round", name=f"round{round_no}") as opened:
            inner = type(rt)(rt.ctx, self, rt.scope, opened, False)
            if previous is None:
                answers = await FanoutStep.run(self, inner)
            else:
                answers = await self._revise(inner, round_no, previous)
            opened.done(answers)
        return answers

    async def _revise(self, rt: StepRuntime, round_no: int, previous: Candidates) -> Candidates:
        by_name = dict(self._jobs_by_name(rt))
        latest = dict(zip(previous.names, previous, strict=True))

        async def one(name: str) -> TextValue:
            settings, index = by_name[name]
            others = Candidates([v for n, v in latest.items() if n != name], [n for n in latest if n != name])
            shown = self._shown(rt, name, others)
            variables = {"expert": name, "sample": index, "round": round_no, "others": shown}
            after: list[dict[str, Any]] = []
            if not settings.conversation:  # the question was in the expert's own prompt
                after.append({"role": "user", "content": rt.render(settings.prompt, **variables) or ""})
            after.append({"role": "assistant", "content": latest[name].text})
            revising = dataclasses.replace(settings, prompt=self.revise)
            record = await rt.call(
                revising, name=name, variables=variables, after=after, cache_salt=f"{name}:{round_no}"
            )
            return TextValue.from_call(record)

        # The round's quorum and grace, as in the first answers: a slow expert holds no round hostage.
        finished, cut = await self.gather_answers(rt, [(name, one(name)) for name in latest])
        revised = 0
        errors: list[str] = []
        for name, result in finished:
            if isinstance(result, BaseException):
                errors.append(f"{name}: {describe_error(result)}")
                rt.note(f"expert {name} failed to revise ({describe_error(result)}); keeps its last answer")
            else:
                latest[name] = result
                revised += 1
        for name in cut:
            rt.note(f"expert {name} was cancelled (late); keeps its last answer")
        needed = int(rt.resolve(self.min_success))
        if revised < needed:
            raise FanoutFailed(f"{self.id} round {round_no}", revised, needed, errors)
        return Candidates(list(latest.values()), list(latest))

    def _jobs_by_name(self, rt: StepRuntime) -> list[tuple[str, tuple[CallSettings, int]]]:
        return [(name, (settings, index)) for name, settings, index in self._jobs(rt)]

    def _shown(self, rt: StepRuntime, name: str, others: Candidates) -> ShownCandidates:
        """The others' answers as `name` sees them: by number only, shuffled unless `shuffle:
        false`; the order and each number's source go to the round's scratchpad."""
        order = list(range(len(others)))
        if self.shuffle and len(order) > 1:
            random.Random(candidate_seed(rt, others)).shuffle(order)
        shown = ShownCandidates([others[i] for i in order], [others.names[i] for i in order], named=False)
        mapping = ", ".join(f"{n}={source}" for n, source in enumerate(shown.names, start=1))
        rt.note(f"{name} reads: {mapping}")
        return shown
