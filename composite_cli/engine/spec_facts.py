"""What a mode will do, read from its steps without running it: how many model calls one request
makes (`composite modes list`), and which step's call makes the answer, so whether a request's
`tools` can reach a model (ModeSpec.client_tools_refusal). Step kinds with their own count define
`expected_calls(params)` and may use `steps_calls` for nested steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composite_cli.engine.steps.base import Step


@dataclass(frozen=True)
class CallRange:
    """How many model calls one request makes: `least` to `most` (not counting retries)."""

    least: int
    most: int

    def __str__(self) -> str:
        return str(self.least) if self.least == self.most else f"{self.least}–{self.most}"

    def __add__(self, other: CallRange) -> CallRange:
        return CallRange(self.least + other.least, self.most + other.most)


UNBOUNDED = 10**9  # a step with no bound of its own; ModeSpec.expected_calls caps it at max_calls


def _int_field(step: object, attr: str, params: Mapping[str, Any], default: int) -> int:
    from composite_cli.engine.spec import resolve  # spec imports this module

    value = resolve(getattr(step, attr, default), params)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def steps_calls(steps: list[Step], params: Mapping[str, Any]) -> CallRange:
    """The model calls a list of steps makes, run in order (for a kind's `expected_calls` over
    its nested steps)."""
    total = CallRange(0, 0)
    for step in steps:
        total = total + _step_calls(step, params)
    return total


def _step_calls(step: Step, params: Mapping[str, Any]) -> CallRange:
    """The model calls one step makes per run, from its fields. A kind whose count is none of the
    cases below defines `expected_calls(params) -> (least, most)`, its children included
    (`steps_calls` counts a nested list; `most` None when the kind has no bound of its own)."""
    own = getattr(step, "expected_calls", None)
    if callable(own):
        least, most = own(params)  # most None: no bound of its own (the mode's max_calls caps it)
        return CallRange(int(least), UNBOUNDED if most is None else int(most))
    branches = [steps_calls(child, params) for child in step.children()]
    if step.kind == "if":
        # the branch not taken may be a missing `else`: no calls
        options = [*branches, CallRange(0, 0)] if len(branches) < 2 else branches
        return CallRange(min(b.least for b in options), max(b.most for b in options))
    if step.kind == "loop":
        rounds = _int_field(step, "max_rounds", params, 1)
        body = branches[0] if branches else CallRange(0, 0)
        # `until` is checked after a round, so a loop with rounds runs at least one
        return CallRange(body.least * min(rounds, 1), body.most * rounds)
    if step.kind == "switch":
        # the case the parameter's value picks (a value with no case is refused before it runs)
        cases = getattr(step, "cases", None) or {}
        chosen = cases.get(params.get(getattr(step, "param", ""), ""))
        if chosen is not None:
            return steps_calls(chosen, params)
    if step.kind == "rlm":
        return CallRange(1, _int_field(step, "max_calls", params, 1))
    if step.kind == "fanout":
        if getattr(step, "samples", None) is not None:
            n = _int_field(step, "samples", params, 1)
        else:
            n = len(getattr(step, "experts", None) or [])
        return CallRange(n, n)
    nested = sum(branches, CallRange(0, 0))
    if not step.aliases():
        return nested
    settings = getattr(step, "settings", None)
    rounds = _int_field(settings, "max_tool_rounds", params, 0) if getattr(settings, "tools", None) else 0
    return CallRange(1, 1 + rounds) + nested


# A request's `tools` go to the call that makes the answer (and to steps marked `client_tools`).
# A kind says whether its answer is such a call with a class attribute `answers_with_client_tools`
# (and, when it is not, `client_tools_refusal`: why, in words after "mode NAME "); a kind that
# says nothing answers with a call offered the tools when it declares its own call fields (`call`,
# `synthesize`, `reflect`), read by the generic reader.
TOOLS_ADVICE = "use a mode whose final step takes tools, e.g. moa-v1 or self-moa-v1"


def kind_answers_with_tools(step: Step) -> bool:
    declared = getattr(type(step), "answers_with_client_tools", None)
    if declared is not None:
        return bool(declared)
    from composite_cli.engine.steps.fields import declared_fields

    return any(decl.type == "call" and not decl.hook for _, decl in declared_fields(type(step)))


def answer_steps(steps: list[Step], params: Mapping[str, Any]) -> list[Step]:
    """The steps whose value can be the value of `steps` (its last one, through `if`, `switch`
    and `loop`; a switch's case is the one the parameters choose)."""
    if not steps:
        return []
    last = steps[-1]
    if last.kind == "switch":
        cases: dict[str, list[Step]] = getattr(last, "cases", None) or {}
        chosen = cases.get(params.get(getattr(last, "param", ""), ""))
        options = [chosen] if chosen is not None else list(cases.values())
        return [s for case in options for s in answer_steps(case, params)]
    if last.kind == "loop":
        from composite_cli.engine.steps.base import value_names

        body = last.children()[0] if last.children() else []
        output = getattr(last, "output", None)
        if body and (output is None or output in value_names(body[-1])):
            return answer_steps(body, params)
        return [last]  # the loop answers with an inner step that is not its last: no final call
    if last.children():  # `if` and any other container: one of its branches' last steps
        return [s for child in last.children() for s in answer_steps(child, params)]
    return [last]


def asks_client_tools(step: Step) -> bool:
    """A step marked `client_tools: true`: it may return the client's tool calls mid-run."""
    settings = [getattr(step, "settings", None)] + [s for _, s in getattr(step, "experts", None) or []]
    return any(getattr(s, "client_tools", False) is True for s in settings)
