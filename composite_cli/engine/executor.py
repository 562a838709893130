"""Run a mode: walk its steps, give each one a StepRuntime, emit events, enforce limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from composite_cli.calls import CallRequest, describe_error, new_id
from composite_cli.config import Profile
from composite_cli.engine.conversation import (
    build_messages,
    clean_messages,
    last_user_text,
    system_text,
    validate_messages,
)
from composite_cli.engine.lifecycle import OpenStep, StepEndedEarly
from composite_cli.engine.runtime import RunContext, RunRequest, RunResult, Scope, StepTotals
from composite_cli.engine.spec import ModeSpec, resolve
from composite_cli.engine.steps.base import CallSettings, Step
from composite_cli.engine.templates import Template
from composite_cli.engine.tool_loop import call_with_tools
from composite_cli.engine.values import Candidates, TextValue, as_text
from composite_cli.errors import RunTimeout
from composite_cli.events import CallRecord, RunFinished, RunStarted, RunStatus, Subscriber, TokenDelta
from composite_cli.litellm_loader import get_litellm


class ReturnToClient(StepEndedEarly):
    """A step's client tool calls end the run early: they are the answer the client gets."""

    def __init__(self, value: TextValue):
        super().__init__("client tool calls", as_text(value))
        self.value = value


class StepRuntime:
    """What a running step can do: render templates, call models, run nested steps."""

    def __init__(self, ctx: RunContext, step: Step, scope: Scope, opened: OpenStep, final: bool):
        self.ctx = ctx
        self.step = step
        self.scope = scope
        self.step_id = opened.step_id
        self.depth = opened.depth
        self.final = final
        self.totals = opened.totals
        self.scratchpad = opened.scratchpad

    @property
    def params(self) -> dict[str, Any]:
        return self.ctx.params

    def resolve(self, value: Any) -> Any:
        return resolve(value, self.ctx.params)

    def variables(self, **extra: Any) -> dict[str, Any]:
        values = self.scope.flat()
        values.update(
            last_role=self.ctx.request.messages[-1].get("role") if self.ctx.request.messages else None,
            input=last_user_text(self.ctx.request.messages),
            system=system_text(self.ctx.request.messages),
            params=self.ctx.params,
        )
        values.update(extra)
        return values

    def render(self, template: Template | None, **extra: Any) -> str | None:
        return None if template is None else template.render(self.variables(**extra))

    def note(self, text: str) -> None:
        """Add a line to this step's scratchpad (stored in the trace, never shown to the caller)."""
        self.scratchpad.append(text)

    async def call(
        self,
        settings: CallSettings,
        *,
        name: str,
        final: bool = False,
        variables: dict[str, Any] | None = None,
        after: Iterable[dict[str, Any]] = (),
        system: str | None = None,
        generation: dict[str, Any] | None = None,
        cache_salt: str = "",
    ) -> CallRecord:
        """One model call for this step. Only a final call sees the client's tools and options."""
        extra = variables or {}
        system_msg = system if system is not None else self.render(settings.system, **extra)
        messages = build_messages(
            self.ctx.request.messages if settings.conversation else [],
            system=system_msg,
            after=list(after),
            prompt=self.render(settings.prompt, **extra),
        )
        options = settings.resolved_generation(self.ctx.params)
        options.update(generation or {})
        request = CallRequest(
            alias=settings.model,
            messages=messages,
            name=name,
            parent_id=self.step_id,
            params=options,
            retries=int(self.resolve(settings.retries)),
            cache_salt=cache_salt,
            backoff=float(self.resolve(settings.backoff)),
            timeout=None if settings.call_timeout is None else float(self.resolve(settings.call_timeout)),
        )
        if final:
            request.params.update(self.ctx.request.generation)
            if self.ctx.request.stream:
                request.on_delta = self._final_delta
        record = await call_with_tools(
            self,
            request,
            internal=settings.tools,
            client_allowed=final or settings.client_tools,
            max_rounds=int(self.resolve(settings.max_tool_rounds)),
            tool_timeout=float(self.resolve(settings.tool_timeout)),
        )
        if settings.client_tools and not final and record.message.get("tool_calls"):
            # This step asked the client to run tools: the run answers with those calls now.
            raise ReturnToClient(TextValue.from_call(record))
        return record

    def _final_delta(self, text: str) -> None:
        self.ctx.final_streamed = True
        self.ctx.emit(TokenDelta(run_id=self.ctx.run_id, step_id=self.step_id, text=text))

    def child_step(
        self,
        *,
        kind: str,
        name: str,
        parent_id: str | None = None,
        depth: int | None = None,
        parent_totals: StepTotals | None = None,
        detail: dict[str, Any] | None = None,
    ) -> OpenStep:
        """A step inside this one (a tool call, a REPL block, ...), for `async with`: see
        engine/lifecycle.py. By default its parent is this step, one level deeper."""
        return OpenStep(
            self.ctx,
            kind=kind,
            name=name,
            parent_id=self.step_id if parent_id is None else parent_id,
            depth=self.depth + 1 if depth is None else depth,
            parent_totals=self.totals if parent_totals is None else parent_totals,
            detail=detail,
        )

    async def run_steps(self, steps: list[Step], scope: Scope, *, final: bool) -> Any:
        return await run_steps(self.ctx, steps, scope, self.totals, self.step_id, self.depth + 1, final=final)


async def run_steps(
    ctx: RunContext,
    steps: list[Step],
    scope: Scope,
    totals: StepTotals,
    parent_id: str | None,
    depth: int,
    *,
    final: bool,
) -> Any:
    """Run steps in order; each one's value is bound to its id. Returns the last value."""
    value: Any = None
    for i, step in enumerate(steps):
        value = await execute_step(
            ctx, step, scope, totals, parent_id, depth, final=final and i == len(steps) - 1
        )
        scope.set(step.id, value)
        if step.updates:
            scope.update(step.updates, value)
    return value


async def execute_step(
    ctx: RunContext,
    step: Step,
    scope: Scope,
    parent_totals: StepTotals,
    parent_id: str | None,
    depth: int,
    *,
    final: bool,
) -> Any:
    aliases = step.aliases()
    alias = aliases[0] if len(aliases) == 1 else None
    model = None
    if alias is not None:
        model = str(ctx.profile.resolve(alias).get("model"))
    opened = OpenStep(
        ctx,
        kind=step.kind,
        name=step.id,
        parent_id=parent_id,
        depth=depth,
        parent_totals=parent_totals,
        alias=alias,
        model=model,
        timeout=float(resolve(step.timeout, ctx.params)),
    )
    async with opened:
        value = await step.run(StepRuntime(ctx, step, scope, opened, final))
        opened.done(value)
    return value


def final_message(value: Any) -> tuple[dict[str, Any], str]:
    """The assistant message and finish_reason the caller gets for a mode's last value."""
    if isinstance(value, TextValue):
        message = dict(value.message)
        message.setdefault("role", "assistant")
        return message, value.finish_reason or "stop"
    text = as_text(value.text if isinstance(value, Candidates) else value)
    return {"role": "assistant", "content": text}, "stop"


async def run_mode(
    mode: ModeSpec,
    request: RunRequest,
    *,
    profile: Profile,
    subscribers: Iterable[Subscriber] = (),
    run_id: str | None = None,
    cache: Any = None,
    timeout: float | None = None,
) -> RunResult:
    """Run `mode` on `request`. Raises the error that ended the run (after recording it).

    `cache` (a CallCache) replays identical model requests instead of calling the model.
    `timeout` (seconds): the caller's bound on the whole run (e.g. LiteLLM's `timeout=`). When it
    passes first the run is cancelled, recorded `cancelled` with `stopped_by` "timeout (..s)",
    and RunTimeout is raised."""
    request.messages = clean_messages(request.messages)
    validate_messages(request.messages, request.tools, request.tool_choice)
    params = mode.merged_params(request.params)
    for alias in mode.aliases():
        profile.resolve(alias)  # an unmapped alias fails before any model is called
    run_id = run_id or new_id()
    get_litellm()  # import it now (seconds, once), not inside the first step's timing
    deadline = float(resolve(mode.limits.deadline, params))
    ctx = RunContext(
        run_id=run_id,
        mode=mode.name,
        profile=profile,
        request=request,
        params=params,
        max_calls=int(resolve(mode.limits.max_calls, params)),
        deadline_s=deadline,
        subscribers=list(subscribers),
    )
    ctx.cache = cache
    ctx.cache_salt = request.cache_salt
    started = time.time()
    ctx.emit(
        RunStarted(
            run_id=run_id,
            mode=mode.name,
            source=request.source,
            profile=profile.name,
            input=last_user_text(request.messages),
            started_at=started,
            user=request.user,
            params=dict(request.params),
        )
    )

    def finished(
        status: RunStatus,
        output: str | None = None,
        reason: str | None = None,
        error: str | None = None,
        stopped_by: str | None = None,
        notes: dict[str, Any] | None = None,
    ) -> float:
        latency = (time.perf_counter() - ctx.started) * 1000
        t = ctx.totals
        ctx.emit(
            RunFinished(
                run_id=run_id,
                status=status,
                latency_ms=latency,
                calls=t.calls,
                prompt_tokens=t.prompt_tokens,
                completion_tokens=t.completion_tokens,
                cost_usd=t.cost_usd if t.calls else None,
                output=output,
                finish_reason=reason,
                error=error,
                stats=dict(ctx.stats),
                stopped_by=stopped_by,
                notes=dict(notes or {}),
            )
        )
        return latency

    caller_cut = timeout is not None and timeout < deadline
    try:
        async with asyncio.timeout(timeout if caller_cut else deadline) as limit:
            try:
                value = await run_steps(ctx, mode.steps, Scope(), ctx.totals, None, 0, final=True)
            except ReturnToClient as early:
                value = early.value
    except TimeoutError:
        if caller_cut and timeout is not None and limit.expired():
            cut = RunTimeout(
                f"the caller's timeout of {timeout:g}s passed before mode {mode.name!r} finished; "
                "the run was cancelled",
                timeout,
            )
            finished(
                "cancelled",
                error=describe_error(cut),
                stopped_by=f"timeout ({timeout:g}s)",
                notes={"timeout_s": timeout},
            )
            raise cut from None
        err = ctx.deadline_error()
        finished("error", error=describe_error(err))
        raise err from None
    except asyncio.CancelledError:
        finished("cancelled", error="cancelled")
        raise
    except Exception as exc:
        finished("error", error=describe_error(exc))
        raise
    message, reason = final_message(value)
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    if request.stream and not ctx.final_streamed and text:
        # The last value was not produced by a streamed call (e.g. a vote): send it whole.
        ctx.emit(TokenDelta(run_id=run_id, step_id=None, text=text))
    status: RunStatus = "partial" if getattr(value, "partial", False) else "ok"
    stopped_by = getattr(value, "stopped_by", None) if status == "partial" else None
    if status == "partial" and reason == "stop":
        reason = "length"  # a capped answer is never reported as a natural stop
    notes = dict(getattr(value, "notes", None) or {})
    latency = finished(status, text, reason, stopped_by=stopped_by, notes=notes)
    t = ctx.totals
    return RunResult(
        run_id=run_id,
        mode=mode.name,
        profile=profile.name,
        message=message,
        finish_reason=reason,
        calls=t.calls,
        prompt_tokens=t.prompt_tokens,
        completion_tokens=t.completion_tokens,
        cost_usd=t.cost_usd if t.calls else None,
        latency_ms=latency,
        status=status,
        cached_calls=ctx.cached_calls,
        stopped_by=stopped_by,
        notes=notes,
        unpriced_models=list(t.unpriced_models),
    )
