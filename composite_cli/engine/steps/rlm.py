"""`rlm`: a Recursive Language Model. The input goes into a sandboxed REPL as `context`; the root
model explores it with code and sub-model calls (see composite_cli/engine/rlm/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from composite_cli.engine.conversation import content_text, last_user_text
from composite_cli.engine.registry import step_kind
from composite_cli.engine.rlm.kept import MAX_IDLE_S, SESSION_ID, Key, session_id
from composite_cli.engine.rlm.session import RlmSession
from composite_cli.engine.rlm.settings import RlmSettings
from composite_cli.engine.spec import ParamRef, ParseContext
from composite_cli.engine.steps.base import MAX_CONCURRENCY, MAX_REPL_MEMORY_MB, MAX_RLM_DEPTH, Step
from composite_cli.engine.steps.fields import declare, declared_fields, number
from composite_cli.engine.values import TextValue
from composite_cli.sandbox import SandboxLimits
from composite_cli.yamlfile import LineDict, field_path

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


@step_kind("rlm")
@dataclass(eq=False)
class RlmStep(Step):
    """The input becomes `context` in a sandboxed Python REPL; the root model writes code there and
    calls sub-models on slices (see Recursive Language Models)."""

    # Its answer is what the root's code sets in the REPL: the client's tools are no functions there.
    answers_with_client_tools: ClassVar[bool] = False
    client_tools_refusal: ClassVar[str] = (
        "answers with what its root model's code computes in a sandboxed REPL; the client's tools "
        "are not functions in that REPL, and no model of the RLM is offered them"
    )

    # The maxima bound what a shared mode file or a request's composite.params may ask of this
    # machine: memory, nested sandboxes, parallel calls.

    root: str = declare(
        "alias", "the root model, which writes the code", key="model", required=True, show="root"
    )
    sub: str = declare(
        "alias", "the model `llm_query` calls; `model` when not given", key="sub_model", show="sub"
    )
    context: str = declare(
        "choice",
        "what `context` holds",
        "input",
        choices=(("input", "the last user message"), ("conversation", "")),
    )
    max_iterations: int | ParamRef = number("root turns", 12, integer=True, minimum=1, show=True)
    max_depth: int | ParamRef = number(
        "nested RLMs", 1, integer=True, minimum=1, maximum=MAX_RLM_DEPTH, show=True
    )
    max_calls: int | ParamRef = number("model calls in all", 60, integer=True, minimum=1, show=True)
    max_output_chars: int | ParamRef = number(
        "REPL output shown to the root per turn", 4000, integer=True, minimum=100, maximum=1_000_000
    )
    concurrency: int | ParamRef = number(
        "parallel sub-calls", 4, integer=True, minimum=1, maximum=MAX_CONCURRENCY
    )
    deadline: float | ParamRef = number("seconds for the whole step", 600.0, minimum=0.001)
    budget_usd: float | ParamRef | None = number("the most it may cost", None, minimum=0.0)
    sub_context_chars: int | ParamRef = number(
        "characters of context per sub-call", 6000, integer=True, minimum=100
    )
    history_turns: int | ParamRef = number("root turns kept in full", 4, integer=True, minimum=1)
    root_max_tokens: int | ParamRef | None = number(
        "`max_tokens` of each root turn", None, integer=True, minimum=1
    )
    sub_max_tokens: int | ParamRef | None = number(
        "`max_tokens` of each sub-call", None, integer=True, minimum=1
    )
    repl_timeout: float | ParamRef = number("seconds per REPL block", 30.0, minimum=0.001)
    repl_memory_mb: int | ParamRef = number(
        "one REPL's memory", 1024, integer=True, minimum=64, maximum=MAX_REPL_MEMORY_MB
    )
    temperature: float | ParamRef | None = number("the root model's temperature", None, minimum=0.0)
    fallback_after: int | ParamRef = number(
        "failed root turns before chunked fallback: 0 at once, -1 off", 2, integer=True, minimum=-1, show=True
    )
    fallback_chunks: int | ParamRef = number("chunks of the fallback", 4, integer=True, minimum=1)
    persist: bool = declare(
        "boolean",
        "keep the REPL for the next turn of the same `session`, which sees its variables",
        False,
    )
    session: str | ParamRef = declare(
        "text",
        "the conversation's id (with `persist`): `$name` of a mode parameter a request sets, "
        "e.g. `composite.params.session`",
        "",
    )
    session_idle: float | ParamRef = number(
        "seconds a kept REPL waits for the next turn", 600.0, minimum=1.0, maximum=MAX_IDLE_S
    )

    def finish(self, node: LineDict, pc: ParseContext, names: set[str], *, in_loop: bool) -> None:
        self.root = self.root or ""
        self.sub = self.sub or self.root
        session = self.session
        where = field_path(self.where, "session")
        if isinstance(session, str) and session.startswith("$"):
            name = session[1:]
            if not isinstance(pc.params.get(name), str):
                known = ", ".join(sorted(k for k, v in pc.params.items() if isinstance(v, str))) or "(none)"
                pc.error(
                    node, "session", where, f"{session!r} is not a text parameter (text parameters: {known})"
                )
            else:
                self.session = ParamRef(name)
        elif isinstance(session, str) and session and not SESSION_ID.match(session):
            pc.error(node, "session", where, "must be 1 to 128 letters, digits or . _ : -, or a $parameter")
        if self.session and not self.persist:
            pc.error(node, "session", where, "needs `persist: true` (a session id keeps nothing without it)")

    def aliases(self) -> list[str]:
        return [self.root] if self.sub == self.root else [self.root, self.sub]

    def settings(self, rt: StepRuntime) -> RlmSettings:
        n = {
            attr: (rt.resolve(value) if isinstance(value, ParamRef) else value)
            for attr, value in ((a, getattr(self, a)) for a, _ in declared_fields(type(self)))
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
            session_key=self._session_key(rt) if self.persist else None,
            session_param=(
                f"composite.params.{self.session.name}" if isinstance(self.session, ParamRef) else "session"
            ),
            session_idle_s=float(n["session_idle"]),
            sandbox=SandboxLimits(
                timeout_s=float(n["repl_timeout"]),
                memory_mb=int(n["repl_memory_mb"]),
                max_output_chars=int(n["max_output_chars"]),
            ),
        )

    def _session_key(self, rt: StepRuntime) -> Key | None:
        """Which kept REPL this turn continues: (mode, step, caller, session id); None without an id."""
        if isinstance(self.session, ParamRef):
            value = rt.resolve(self.session)
            if value == "":
                return None  # the request named no session: nothing is kept
            ident = session_id(value, f"composite.params.{self.session.name}")
        else:
            ident = self.session
        if not ident:
            return None
        return (str(rt.ctx.mode), self.id, str(rt.ctx.request.user or ""), ident)

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
