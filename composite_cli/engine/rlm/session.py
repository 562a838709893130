"""One Recursive Language Model run: the root model writes code against `context` in a sandboxed
REPL, calls sub-models on slices, and ends with FINAL(answer) or FINAL_VAR(name).

Trace shape: the session's parent step holds the root model's calls (`llm` rows) and one `repl`
step per executed block (the code, its truncated output, its duration); `llm_query` sub-calls are
`llm` rows under the `repl` step that made them, and `rlm_query` children are `rlm` steps there.
Caps (iterations, calls, deadline, cost budget) end the session with the best partial answer,
marked partial; they never crash or hang the run.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from composite_cli.calls import CallRecord, CallRequest, complete, describe_error, new_id
from composite_cli.engine.rlm import prompts
from composite_cli.engine.rlm.protocol import code_blocks, find_final, truncate
from composite_cli.engine.runtime import StepTotals
from composite_cli.engine.templates import Template
from composite_cli.engine.values import TextValue
from composite_cli.errors import CompositeError, RunLimitExceeded
from composite_cli.events import StepFinished, StepStarted
from composite_cli.sandbox import Sandbox, SandboxDead, SandboxLimits, SandboxVariableError

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime

_SETUP = """
_final_set = False
_final_answer = ""
def FINAL(answer):
    global _final_set, _final_answer
    _final_set, _final_answer = True, str(answer)
    print("FINAL answer recorded.")
def FINAL_VAR(name):
    global _final_set, _final_answer
    value = globals()[name] if isinstance(name, str) and name in globals() else name
    _final_set, _final_answer = True, str(value)
    print("FINAL answer recorded.")
"""
_SYSTEM = Template.compile(
    prompts.SYSTEM,
    {
        "context_type",
        "context_length",
        "sub_context_chars",
        "recursive",
        "max_output_chars",
        "max_iterations",
        "max_calls",
    },
)
_FIRST = Template.compile(prompts.FIRST_TURN, {"context_type", "context_length", "head", "tail"})
_NEXT = Template.compile(prompts.NEXT_TURN, {"output"})


@dataclass
class _Counter:
    calls: int = 0


class RlmLimit(CompositeError):
    """A cap of the RLM step was reached (shown to the REPL code, or ends the session)."""


@dataclass
class RlmSettings:
    root: str
    sub: str
    max_iterations: int = 12
    max_depth: int = 1
    max_calls: int = 60
    max_output_chars: int = 4000
    concurrency: int = 4
    deadline_s: float = 600.0
    budget_usd: float | None = None
    sub_context_chars: int = 6000
    history_turns: int = 4
    root_generation: dict[str, Any] = field(default_factory=dict)
    sub_generation: dict[str, Any] = field(default_factory=dict)
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)


class RlmSession:
    """Runs the root model's REPL loop under one parent step, at one recursion depth."""

    def __init__(
        self,
        rt: StepRuntime,
        settings: RlmSettings,
        *,
        parent_id: str,
        totals: StepTotals,
        depth: int = 1,
        started: float | None = None,
        counter: _Counter | None = None,
    ):
        self.rt = rt
        self.ctx = rt.ctx
        self.s = settings
        self.parent_id = parent_id
        self.totals = totals
        self.depth = depth
        self.started = started if started is not None else time.perf_counter()
        self.iteration_id: str | None = None
        self.sub_calls = 0
        self.last_prose = ""
        self.last_output = ""
        self.notes: list[str] = []
        # Calls started by this session and its children (one counter for the whole tree).
        self.counter = counter if counter is not None else _Counter()
        self.wrap_up: str | None = None  # a sub-call hit a cap: the root gets one turn to answer

    # -- caps -----------------------------------------------------------------------------------
    def _remaining(self) -> float:
        return self.s.deadline_s - (time.perf_counter() - self.started)

    def _cap_reached(self, reserve_root: bool = False) -> str | None:
        """The cap that stops the next call, if any. Sub-calls leave one call for the root's answer."""
        if self._remaining() <= 0:
            return f"deadline of {self.s.deadline_s:g}s"
        if self.counter.calls >= self.s.max_calls - (1 if reserve_root else 0):
            return f"max_calls ({self.s.max_calls})"
        cost = self.totals.cost_usd
        if (
            self.s.budget_usd is not None
            and cost is not None
            and self.totals.calls
            and cost >= self.s.budget_usd
        ):
            return f"cost budget of ${self.s.budget_usd:g} (spent ${cost:.4f})"
        return None

    # -- sub-calls, from the REPL ----------------------------------------------------------------
    async def llm_query(self, prompts_in: list[str]) -> list[str]:
        semaphore = asyncio.Semaphore(self.s.concurrency)
        parent = self.iteration_id or self.parent_id

        async def one(index: int, prompt: str) -> str:
            async with semaphore:
                cap = self._cap_reached(reserve_root=True)
                if cap:
                    self.wrap_up = cap
                    raise RlmLimit(f"llm_query refused: the RLM reached its {cap}; answer now with FINAL")
                self.counter.calls += 1  # counted before the await, so parallel calls cannot overshoot
                self.sub_calls += 1
                self._stat("rlm_sub_calls", 1)
                request = CallRequest(
                    alias=self.s.sub,
                    messages=[{"role": "user", "content": prompt}],
                    name=f"llm_query[{index}]" if len(prompts_in) > 1 else "llm_query",
                    parent_id=parent,
                    params=dict(self.s.sub_generation),
                    timeout=max(0.001, self._remaining()),
                )
                record = await complete(self.ctx, request)
                return record.text

        # One failure cancels the rest of the batch: nothing keeps running (or billing) after it.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(i, p)) for i, p in enumerate(prompts_in)]
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None
        return [task.result() for task in tasks]

    async def rlm_query(self, prompt: str, context: str) -> str:
        if self.depth >= self.s.max_depth:
            raise RlmLimit(f"rlm_query refused: max_depth is {self.s.max_depth}; use llm_query")
        child_id = new_id()
        parent = self.iteration_id or self.parent_id
        totals = StepTotals(self.ctx.step_totals.get(parent, self.totals))
        self.ctx.step_totals[child_id] = totals
        self.ctx.emit(
            StepStarted(
                self.ctx.run_id,
                child_id,
                parent,
                "rlm",
                "rlm_query",
                time.time(),
                self.rt.depth + self.depth * 2,
                detail={"prompt": prompt[:2000]},
            )
        )
        t0 = time.perf_counter()
        child = RlmSession(
            self.rt, self.s, parent_id=child_id, totals=totals, depth=self.depth + 1, started=self.started
        )
        try:
            value = await child.run(f"{context}\n\nQuery: {prompt}")
        except BaseException as exc:
            self.ctx.emit(
                StepFinished(
                    self.ctx.run_id,
                    child_id,
                    "error",
                    (time.perf_counter() - t0) * 1000,
                    error=describe_error(exc),
                )
            )
            raise
        status = "partial" if value.partial else "ok"
        self.ctx.emit(
            StepFinished(
                self.ctx.run_id,
                child_id,
                status,
                (time.perf_counter() - t0) * 1000,
                output=value.text,
                scratchpad="\n".join(child.notes) or None,
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                cost_usd=totals.cost_usd if totals.calls else None,
            )
        )
        return value.text

    def _stat(self, key: str, amount: int) -> None:
        self.ctx.stats[key] = self.ctx.stats.get(key, 0) + amount

    # -- the loop -----------------------------------------------------------------------------------
    async def run(self, context: Any) -> TextValue:
        self.ctx.stats["rlm_depth"] = max(self.ctx.stats.get("rlm_depth", 0), self.depth)
        text = context if isinstance(context, str) else repr(context)
        kind = "string" if isinstance(context, str) else "list of messages"
        limits = self.s.sandbox
        recursive = self.s.max_depth > self.depth
        sandbox = Sandbox(
            limits=limits, on_llm_query=self.llm_query, on_rlm_query=self.rlm_query if recursive else None
        )
        try:
            await sandbox.start({"context": context, "context_length": len(text)})
            setup = await sandbox.execute(_SETUP)
            if setup.error:
                raise RlmLimit(f"the REPL could not be prepared: {setup.error}")
            return await self._loop(sandbox, text, kind, recursive)
        finally:
            await sandbox.close()

    async def _loop(self, sandbox: Sandbox, text: str, kind: str, recursive: bool) -> TextValue:
        system = _SYSTEM.render(
            {
                "context_type": kind,
                "context_length": len(text),
                "sub_context_chars": self.s.sub_context_chars,
                "recursive": recursive,
                "max_output_chars": self.s.max_output_chars,
                "max_iterations": self.s.max_iterations,
                "max_calls": self.s.max_calls,
            }
        )
        first = _FIRST.render(
            {"context_type": kind, "context_length": len(text), "head": text[:600], "tail": text[-600:]}
        )
        head = [{"role": "system", "content": system}, {"role": "user", "content": first}]
        turns: list[dict[str, Any]] = []
        warned = False
        for iteration in range(1, self.s.max_iterations + 1):
            cap = self._cap_reached()
            if cap:
                return self._partial(cap)
            self._stat("rlm_iterations", 1)
            try:
                record = await self._root_turn(head, turns, iteration)
            except RlmLimit as exc:
                return self._partial(str(exc))
            reply = record.text
            outputs, final = await self._execute_blocks(sandbox, reply, iteration)
            if final is None:
                final = await self._final_from_text(sandbox, reply, outputs)
            if final is not None:
                self.notes.append(f"finished after {iteration} iteration(s)")
                return TextValue(final)
            self.last_prose = _strip_code(reply) or self.last_prose
            if warned:
                return self._partial(str(self.wrap_up))  # its last turn, and still no FINAL
            message = _NEXT.render({"output": "\n\n".join(outputs)}) if outputs else prompts.NO_CODE
            if self.wrap_up:
                # A cap stopped the sub-calls: one more turn for the root to answer with what it has.
                message += "\n\n" + prompts.WRAP_UP.replace("{cap}", self.wrap_up)
                warned = True
            turns += [{"role": "assistant", "content": reply}, {"role": "user", "content": message}]
        return self._partial(f"max_iterations ({self.s.max_iterations})")

    async def _root_turn(
        self, head: list[dict[str, Any]], turns: list[dict[str, Any]], iteration: int
    ) -> CallRecord:
        """The root's next reply. A full context window drops the oldest turns and tries again."""
        keep = 2 * self.s.history_turns
        while True:
            window = turns[-keep:] if keep else []
            try:
                return await self._root_call(head + window, iteration)
            except RunLimitExceeded as exc:
                raise RlmLimit(str(exc)) from None
            except Exception as exc:
                name = type(exc).__name__
                if name == "ContextWindowExceededError":
                    if not window:
                        raise RlmLimit("the root model's context window is full") from None
                    keep = len(window) - 2
                    self.notes.append(f"iteration {iteration}: context window full, kept {keep // 2} turn(s)")
                    continue
                if name == "Timeout" and self._remaining() <= 0.05:
                    raise RlmLimit(f"deadline of {self.s.deadline_s:g}s") from None
                raise

    async def _root_call(self, messages: list[dict[str, Any]], iteration: int) -> CallRecord:
        self.counter.calls += 1
        request = CallRequest(
            alias=self.s.root,
            messages=messages,
            name=f"root (iteration {iteration})" if self.depth == 1 else f"root d{self.depth} ({iteration})",
            parent_id=self.parent_id,
            params=dict(self.s.root_generation),
            timeout=max(0.001, self._remaining()),
        )
        return await complete(self.ctx, request)

    async def _execute_blocks(
        self, sandbox: Sandbox, reply: str, iteration: int
    ) -> tuple[list[str], str | None]:
        outputs: list[str] = []
        for number, code in enumerate(code_blocks(reply), start=1):
            result_text, status = await self._execute_one(sandbox, code, iteration, number)
            outputs.append(result_text)
            if "FINAL" in code and status != "killed":
                answer = await self._final_in_repl(sandbox)
                if answer is not None:
                    return outputs, answer
            if status == "dead":
                raise RlmLimit("the REPL died too many times")
        return outputs, None

    async def _execute_one(self, sandbox: Sandbox, code: str, iteration: int, number: int) -> tuple[str, str]:
        step_id = new_id()
        self.iteration_id = step_id
        self.ctx.step_totals[step_id] = StepTotals(self.totals)
        name = f"iteration {iteration}" + (f".{number}" if number > 1 else "")
        self.ctx.emit(
            StepStarted(
                self.ctx.run_id,
                step_id,
                self.parent_id,
                "repl",
                name,
                time.time(),
                self.rt.depth + self.depth * 2 - 1,
                detail={"code": code},
            )
        )
        t0 = time.perf_counter()
        try:
            result = await sandbox.execute(code)
        except SandboxDead as exc:
            self.ctx.emit(
                StepFinished(
                    self.ctx.run_id, step_id, "error", (time.perf_counter() - t0) * 1000, error=str(exc)
                )
            )
            return f"Error: {exc}", "dead"
        finally:
            self.iteration_id = None
        shown = truncate(result.for_model(), self.s.max_output_chars)
        self.last_output = shown
        totals = self.ctx.step_totals[step_id]
        self.ctx.emit(
            StepFinished(
                self.ctx.run_id,
                step_id,
                "error" if result.error else "ok",
                result.duration_s * 1000,
                shown,
                result.error,
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                cost_usd=totals.cost_usd if totals.calls else None,
            )
        )
        return shown, "killed" if result.killed else "ok"

    async def _final_in_repl(self, sandbox: Sandbox) -> str | None:
        try:
            if await sandbox.get_variable("_final_set") != "True":
                return None
            return await sandbox.get_variable("_final_answer")
        except SandboxVariableError:
            return None

    async def _final_from_text(self, sandbox: Sandbox, reply: str, outputs: list[str]) -> str | None:
        final = find_final(reply)
        if final is None:
            return None
        if final.kind == "text":
            return final.value
        try:
            return await sandbox.get_variable(final.value)
        except SandboxVariableError as exc:
            outputs.append(f"FINAL_VAR({final.value}) failed: {exc}")
            return None

    def _partial(self, why: str) -> TextValue:
        self.notes.append(f"stopped: {why}")
        answer = self.last_prose or self.last_output or ""
        return TextValue(answer, finish_reason="length", partial=True)


def _strip_code(reply: str) -> str:
    for block in code_blocks(reply):
        reply = reply.replace(block, "")
    return reply.replace("```repl", "").replace("```python", "").replace("```", "").strip()
