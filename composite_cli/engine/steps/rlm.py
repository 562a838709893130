"""`rlm`: a Recursive Language Model. The input goes into a sandboxed REPL as `context`; the root
model explores it with code and sub-model calls (see composite_cli/engine/rlm/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from composite_cli.engine.messages import content_text, last_user_text
from composite_cli.engine.registry import step_kind
from composite_cli.engine.rlm.session import RlmSession
from composite_cli.engine.rlm.settings import RlmSettings
from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.base import (
    COMMON_FIELDS,
    MAX_CONCURRENCY,
    MAX_REPL_MEMORY_MB,
    MAX_RLM_DEPTH,
    Step,
)
from composite_cli.engine.values import TextValue
from composite_cli.sandbox import SandboxLimits
from composite_cli.yamlfile import LineDict

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

_NUMBERS: dict[str, tuple[Any, bool, float | None, float | None]] = {
    # field: (default, integer, minimum, maximum). The maxima bound what a shared mode file or a
    # request's composite.params may ask of this machine: memory, nested sandboxes, parallel calls.
    "max_iterations": (12, True, 1, None),
    "max_depth": (1, True, 1, MAX_RLM_DEPTH),
    "max_calls": (60, True, 1, None),
    "max_output_chars": (4000, True, 100, 1_000_000),
    "concurrency": (4, True, 1, MAX_CONCURRENCY),
    "deadline": (600.0, False, 0.001, None),
    "budget_usd": (None, False, 0.0, None),
    "sub_context_chars": (6000, True, 100, None),
    "history_turns": (4, True, 1, None),
    "root_max_tokens": (None, True, 1, None),
    "sub_max_tokens": (None, True, 1, None),
    "repl_timeout": (30.0, False, 0.001, None),
    "repl_memory_mb": (1024, True, 64, MAX_REPL_MEMORY_MB),
    "temperature": (None, False, 0.0, None),
    "fallback_after": (2, True, -1, None),
    "fallback_chunks": (4, True, 1, None),
}


@step_kind("rlm")
class RlmStep(Step):
    FIELDS = COMMON_FIELDS | set(_NUMBERS) | {"model", "sub_model", "context"}
    root: str
    sub: str
    context: str
    numbers: dict[str, Any]

    @classmethod
    def parse(
        cls, node: LineDict, pc: ParseContext, where: str, names: set[str], *, in_loop: bool
    ) -> RlmStep:
        step = cls()
        step.init_common(node, pc, where, names)
        step.root = pc.string(node, "model", where, required=True) or ""
        step.sub = pc.string(node, "sub_model", where) or step.root
        step.context = pc.string(node, "context", where) or "input"
        if step.context not in ("input", "conversation"):
            pc.error(
                node, "context", f"{where}.context", "must be input (the last user message) or conversation"
            )
        step.numbers = {
            key: pc.number(node, key, where, default, integer=integer, minimum=minimum, maximum=maximum)
            for key, (default, integer, minimum, maximum) in _NUMBERS.items()
        }
        return step

    def aliases(self) -> list[str]:
        return [self.root] if self.sub == self.root else [self.root, self.sub]

    def summary(self) -> str:
        n = self.numbers
        return (
            f"root={self.root} sub={self.sub} max_iterations={n['max_iterations']} "
            f"max_depth={n['max_depth']} max_calls={n['max_calls']} fallback_after={n['fallback_after']}"
        )

    def settings(self, rt: StepRuntime) -> RlmSettings:
        n = {
            key: (rt.resolve(value) if isinstance(value, ParamRef) else value)
            for key, value in self.numbers.items()
        }
        root_gen = {"max_tokens": n["root_max_tokens"], "temperature": n["temperature"]}
        sub_gen = {"max_tokens": n["sub_max_tokens"]}
        return RlmSettings(
            root=self.root,
            sub=self.sub,
            max_iterations=int(n["max_iterations"]),
            max_depth=int(n["max_depth"]),
            max_calls=int(n["max_calls"]),
            max_output_chars=int(n["max_output_chars"]),
            concurrency=int(n["concurrency"]),
            deadline_s=float(n["deadline"]),
            budget_usd=None if n["budget_usd"] is None else float(n["budget_usd"]),
            sub_context_chars=int(n["sub_context_chars"]),
            history_turns=int(n["history_turns"]),
            fallback_after=int(n["fallback_after"]),
            fallback_chunks=int(n["fallback_chunks"]),
            root_generation={k: v for k, v in root_gen.items() if v is not None},
            sub_generation={k: v for k, v in sub_gen.items() if v is not None},
            sandbox=SandboxLimits(
                timeout_s=float(n["repl_timeout"]),
                memory_mb=int(n["repl_memory_mb"]),
                max_output_chars=int(n["max_output_chars"]),
            ),
        )

    async def run(self, rt: StepRuntime) -> TextValue:
        messages = rt.ctx.request.messages
        if self.context == "input":
            context: Any = last_user_text(messages)
        else:
            context = [{"role": m.get("role"), "content": content_text(m.get("content"))} for m in messages]
        session = RlmSession(rt, self.settings(rt), parent_id=rt.step_id, totals=rt.totals)
        try:
            return await session.run(context)  # the answer exists only at the end: sent whole
        finally:
            for note in session.notes:
                rt.note(note)
