"""The step lifecycle, written once: open a step, link its totals, emit StepStarted, time it, and
emit exactly one StepFinished on every way out, with a status from events.StepStatus.

    async with OpenStep(ctx, kind="tool", name="calculator", parent_id=..., depth=...,
                        parent_totals=...) as step:
        ...
        step.done(value)          # ok, or partial when the value says so

Ways out and their status:
- the block ends: what `done`, `fail` or `skip` set (`ok` when none was called);
- the step's own `timeout` passes: `timeout`, and StepTimeout is raised in place of the cancel;
- asyncio.CancelledError (or another BaseException such as KeyboardInterrupt): `cancelled`,
  re-raised;
- StepEndedEarly (the run answers now, e.g. with the client's tool calls): `ok` with its output,
  re-raised so every enclosing step ends the same way;
- any other exception: `error` with its one-line description, re-raised.

The executor, the tool loop and the RLM session open their steps here (StepRuntime.child_step is
the short form for a step inside a running step)."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from composite_cli.calls import new_id
from composite_cli.engine.runtime import StepTotals
from composite_cli.engine.values import as_text
from composite_cli.errors import StepTimeout, describe_error
from composite_cli.events import StepFinished, StepStarted, StepStatus

if TYPE_CHECKING:
    from composite_cli.engine.runtime import RunContext


class StepEndedEarly(Exception):
    """Ends the step it passes through, and each one around it, with `ok` and `output`."""

    def __init__(self, message: str, output: str | None):
        super().__init__(message)
        self.output = output


class OpenStep:
    """One step of `ctx`'s run between its StepStarted and its StepFinished: made, then entered
    with `async with` (see the module's docstring)."""

    def __init__(
        self,
        ctx: RunContext,
        *,
        kind: str,
        name: str,
        parent_id: str | None,
        depth: int,
        parent_totals: StepTotals,
        alias: str | None = None,
        model: str | None = None,
        detail: dict[str, Any] | None = None,
        timeout: float | None = None,
    ):
        self.ctx = ctx
        self.kind = kind
        self.name = name
        self.parent_id = parent_id
        self.depth = depth
        self.alias = alias
        self.model = model
        self.detail = detail
        self.timeout = timeout
        self.step_id = new_id()
        self.totals = StepTotals(parent_totals)
        # Lines stored in the trace as the step's scratchpad (never shown to the caller).
        self.scratchpad: list[str] = []
        self.status: StepStatus = "ok"
        self.output: str | None = None
        self.error: str | None = None
        self.latency_ms: float | None = None  # None: the time between enter and exit
        self._t0 = 0.0
        self._timer: asyncio.Timeout | None = None
        self._finished = False

    # -- how the block ended, when it did not raise ---------------------------------------------
    def done(self, value: Any) -> None:
        """The step produced `value`: `partial` when the value is marked partial, else `ok`."""
        self.status = "partial" if getattr(value, "partial", False) else "ok"
        self.output = as_text(value)

    def fail(self, error: str, *, status: StepStatus = "error") -> None:
        """The step failed without raising (e.g. a tool whose error goes back to the model)."""
        self.status, self.error = status, error

    def skip(self, reason: str) -> None:
        """The step did not run; `reason` says why (kept as its error)."""
        self.status, self.error = "skipped", reason

    # -- the lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> OpenStep:
        self.ctx.step_totals[self.step_id] = self.totals
        self.ctx.emit(
            StepStarted(
                run_id=self.ctx.run_id,
                step_id=self.step_id,
                parent_id=self.parent_id,
                kind=self.kind,
                name=self.name,
                started_at=time.time(),
                depth=self.depth,
                alias=self.alias,
                model=self.model,
                detail=self.detail,
            )
        )
        self._t0 = time.perf_counter()
        if self.timeout is not None:
            self._timer = asyncio.timeout(self.timeout)
            await self._timer.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._timer is not None:
            try:
                await self._timer.__aexit__(exc_type, exc, tb)
            except TimeoutError:
                # Only the step's own timer raises here (it turned its cancel into TimeoutError).
                err = StepTimeout(f"step {self.name!r} timed out after {self.timeout:g}s")
                self._finish("timeout", error=describe_error(err))
                raise err from None
        if exc is None:
            self._finish(self.status, output=self.output, error=self.error)
        elif isinstance(exc, StepEndedEarly):
            self._finish("ok", output=exc.output)
        elif isinstance(exc, Exception):
            self._finish("error", error=describe_error(exc))
        else:  # asyncio.CancelledError, KeyboardInterrupt, ...: the step was stopped from outside
            self._finish("cancelled", error="cancelled")
        return False  # never swallow: the exception goes on as it came

    def _finish(self, status: StepStatus, *, output: str | None = None, error: str | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        latency = self.latency_ms if self.latency_ms is not None else (time.perf_counter() - self._t0) * 1000
        totals = self.totals
        self.ctx.emit(
            StepFinished(
                run_id=self.ctx.run_id,
                step_id=self.step_id,
                status=status,
                latency_ms=latency,
                output=output,
                error=error,
                scratchpad="\n".join(self.scratchpad) or None,
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                cost_usd=totals.cost_usd if totals.calls else None,
            )
        )
