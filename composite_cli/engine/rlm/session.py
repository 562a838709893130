"""One Recursive Language Model run: the root model writes code against `context` in a sandboxed
REPL, calls sub-models on slices, and ends with FINAL(answer) or FINAL_VAR(name).

Trace shape: the session's parent step holds the root model's calls (`llm` rows) and one `repl`
step per executed block (the code, its truncated output, its duration); `llm_query` sub-calls are
`llm` rows under the `repl` step that made them, and `rlm_query` children are `rlm` steps there.
Caps (iterations, calls, deadline, cost budget) end the session with the best partial answer,
marked partial with `stopped_by` naming the cap; they never crash or hang the run.

What the root is sent always fits its model's window (composite_cli/engine/rlm/window.py). A root
that cannot follow the protocol — `fallback_after` turns without code that runs, or a window too
small for even one turn — is replaced by a built-in program run in the same REPL
(composite_cli/engine/rlm/fallback.py). The answer's `notes["rlm"]["path"]` and the step's
scratchpad say which path answered ("model" or "fallback") and why.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from composite_cli.calls import CallRequest, complete
from composite_cli.engine.rlm import fallback, prompts, repl, turns
from composite_cli.engine.rlm.kept import KEPT
from composite_cli.engine.rlm.protocol import code_blocks, truncate
from composite_cli.engine.rlm.settings import (
    Caps,
    Counter,
    RlmFallbackError,
    RlmLimit,
    RlmSettings,
    RootWindowFull,
)
from composite_cli.engine.rlm.window import (
    MESSAGE_OVERHEAD,
    SMALL_WINDOW,
    Window,
    message_tokens,
    recent_turns,
    reply_cap,
)
from composite_cli.engine.runtime import StepTotals
from composite_cli.engine.values import TextValue
from composite_cli.errors import RunLimitExceeded, describe_error
from composite_cli.events import CallRecord
from composite_cli.model_limits import estimate_tokens, window_or_fallback
from composite_cli.sandbox import Sandbox, SandboxDead
from composite_cli.sandbox.sandbox import FailedItem

if TYPE_CHECKING:
    from composite_cli.engine.executor import StepRuntime


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
        counter: Counter | None = None,
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
        self.isolation: dict[str, str] = {}
        # Calls started by this session and its children (one counter for the whole tree).
        self.counter = counter if counter is not None else Counter()
        self.caps = Caps(settings, self.started, self.counter, totals)
        self.wrap_up: str | None = None  # a sub-call hit a cap: the root gets one turn to answer
        self.path = "model"  # or "fallback": which path produced the answer
        self.reason = ""  # why the fallback ran
        self.iterations = 0
        self.in_fallback = False
        self.sub_params: dict[str, Any] = {}  # the fallback's per-cell sub-call settings
        self.seen_code: set[str] = set()
        self.code_ran = False  # some block was executed in this session (whatever its outcome)
        self._sub_window: int | None = None
        self.continued: int | None = None  # a kept REPL's earlier turns, when this turn continues one
        self.carried = ""  # what the root is told of them

    # -- windows ----------------------------------------------------------------------------------
    def _window_of(self, alias: str) -> tuple[int, bool]:
        return window_or_fallback(self.ctx.profile.candidates(alias))

    def sub_window(self) -> int:
        if self._sub_window is None:
            self._sub_window = self._window_of(self.s.sub)[0]
        return self._sub_window

    def _sub_params(self, prompt: str) -> dict[str, Any]:
        """The sub-call's settings: on a small window the reply is capped like the root's, and
        lowered if prompt and reply would not fit."""
        params = {**self.s.sub_generation, **self.sub_params}
        window = self.sub_window()
        wanted = params.get("max_tokens")
        if window <= SMALL_WINDOW:
            wanted = min(wanted or window, reply_cap(window))
        if isinstance(wanted, int):
            room = window - estimate_tokens(prompt) - MESSAGE_OVERHEAD
            params["max_tokens"] = max(16, min(wanted, room))
        return params

    # -- sub-calls, from the REPL ----------------------------------------------------------------
    async def llm_query(self, prompts_in: list[str]) -> list[str]:
        semaphore = asyncio.Semaphore(self.s.concurrency)
        parent = self.iteration_id or self.parent_id

        async def one(index: int, prompt: str) -> str:
            async with semaphore:
                cap = self.caps.reached(reserve_root=not self.in_fallback)
                if cap:
                    self.wrap_up = cap
                    raise RlmLimit(
                        cap, f"llm_query refused: the RLM reached its {cap}; answer now with FINAL"
                    )
                self.counter.calls += 1  # counted before the await, so parallel calls cannot overshoot
                self.sub_calls += 1
                self._stat("rlm_sub_calls", 1)
                request = CallRequest(
                    alias=self.s.sub,
                    messages=[{"role": "user", "content": prompt}],
                    name=f"llm_query[{index}]" if len(prompts_in) > 1 else "llm_query",
                    parent_id=parent,
                    params=self._sub_params(prompt),
                    timeout=max(0.001, self.caps.remaining()),
                )
                try:
                    record = await complete(self.ctx, request)
                except RunLimitExceeded as exc:
                    # the run's own caps (max_calls, budget, deadline) stop the whole run
                    limit = f"max_calls ({self.ctx.max_calls})" if exc.limit == "max_calls" else exc.limit
                    self.wrap_up = f"run {limit}"
                    raise RlmLimit(f"run {limit}", str(exc)) from None
                except Exception as exc:  # noqa: BLE001 - the item's failure is its slot's text
                    if type(exc).__name__ == "Timeout" and self.caps.remaining() <= 0.05:
                        cap = f"deadline ({self.s.deadline_s:g}s)"
                        self.wrap_up = cap
                        raise RlmLimit(cap, f"llm_query refused: the RLM reached its {cap}") from None
                    # One item failed (its `llm` row in the trace has status "error"): the others
                    # keep their answers, and the code sees this slot's error as text.
                    line = describe_error(exc)
                    self.notes.append(f"{request.name} failed: {line}")
                    return FailedItem(f"Error: {line}")
                return record.text

        # Each item's own failure is its slot's text (FailedItem); a cap (RlmLimit: the step's or the
        # run's max_calls, budget or deadline) cancels the rest of the batch and fails the query:
        # nothing keeps running (or billing) after it.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(i, p)) for i, p in enumerate(prompts_in)]
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None
        return [task.result() for task in tasks]

    async def rlm_query(self, prompt: str, context: str) -> str:
        if self.depth >= self.s.max_depth:
            raise RlmLimit(
                f"max_depth ({self.s.max_depth})",
                f"rlm_query refused: max_depth is {self.s.max_depth}; use llm_query",
            )
        parent = self.iteration_id or self.parent_id
        async with self.rt.child_step(
            kind="rlm",
            name="rlm_query",
            parent_id=parent,
            depth=self.rt.depth + self.depth * 2,
            parent_totals=self.ctx.step_totals.get(parent, self.totals),
            detail={"prompt": prompt[:2000]},
        ) as step:
            child = RlmSession(
                self.rt,
                self.s,
                parent_id=step.step_id,
                totals=step.totals,
                depth=self.depth + 1,
                started=self.started,
                counter=self.counter,
            )
            step.scratchpad = child.notes  # the child's notes, as it writes them
            value = await child.run(f"{context}\n\nQuery: {prompt}")
            step.done(value)
        return value.text

    def _stat(self, key: str, amount: int) -> None:
        self.ctx.stats[key] = self.ctx.stats.get(key, 0) + amount

    # -- the run ------------------------------------------------------------------------------------
    async def run(self, context: Any) -> TextValue:
        self.ctx.stats["rlm_depth"] = max(self.ctx.stats.get("rlm_depth", 0), self.depth)
        text = context if isinstance(context, str) else repr(context)
        kind = "string" if isinstance(context, str) else "list of messages"
        limits = self.s.sandbox
        recursive = self.s.max_depth > self.depth
        plan = fallback.plan(context, self.sub_window(), self.s.sub_context_chars, self.s.fallback_chunks)
        variables = {"context": context, "context_length": len(text), "question": plan.question}
        on_rlm = self.rlm_query if recursive else None
        key = self.s.session_key if self.depth == 1 else None  # rlm_query children never keep
        sid = key[3] if key else ""
        shape = (limits, recursive)
        kept, why = KEPT.take(key, shape, self.s.session_param) if key else (None, "")
        sandbox = (
            kept.sandbox if kept else Sandbox(limits=limits, on_llm_query=self.llm_query, on_rlm_query=on_rlm)
        )
        done = False
        try:
            if kept is not None:
                sandbox.set_handlers(on_llm_query=self.llm_query, on_rlm_query=on_rlm)
                await sandbox.set_variables(variables)
                await sandbox.execute(repl.new_turn(kept.turns))
                self.continued = kept.turns
                self.carried = await self._carried(sandbox, kept.turns)
                self.notes.append(f"session {sid!r}: turn {kept.turns + 1}, continues the kept REPL")
            else:
                await sandbox.start(variables)
                setup = await sandbox.execute(repl.SETUP)
                if setup.error:
                    raise RlmLimit("repl setup", f"the REPL could not be prepared: {setup.error}")
                if key:
                    kept = KEPT.keep(key, sandbox, shape)
                    await sandbox.execute(repl.new_turn(0))
                    kept_or_not = (
                        "kept for the next turn" if kept else f"not kept: {KEPT.max_kept} sessions are busy"
                    )
                    self.notes.append(f"session {sid!r}: turn 1 ({why}), the REPL is {kept_or_not}")
            # which isolation layers took effect on this machine, for the trace (notes and scratchpad)
            self.isolation = dict(sandbox.isolation)
            self.notes.append("sandbox: " + "; ".join(f"{k}: {v}" for k, v in self.isolation.items()))
            outcome = await self._loop(sandbox, text, kind, recursive, plan)
            if not isinstance(outcome, TextValue):
                outcome = await self._fallback(sandbox, plan, outcome)
            done = True
            return outcome
        finally:
            if kept is not None and done:
                KEPT.release(kept, self.s.session_idle_s)
            else:
                if kept is not None:
                    KEPT.discard(kept)  # a turn that failed leaves no REPL behind
                await sandbox.close()

    async def _carried(self, sandbox: Sandbox, turns: int) -> str:
        """What the root is told of a kept REPL: the earlier turns' contexts and variables."""
        names = await repl.earlier_variables(sandbox)
        contexts = "context_0" if turns == 1 else f"context_0 ... context_{turns - 1}"
        text = (
            f"This REPL continues this conversation: it ran {turns} earlier turn(s). `context` is this "
            f"turn's; {contexts} hold the earlier turns' contexts"
        )
        return text + (f"; variables from earlier turns: {names}." if names else ".")

    def _fallback_due(self, fruitless: int) -> bool:
        return self.s.fallback_after >= 0 and fruitless >= self.s.fallback_after

    async def _loop(
        self, sandbox: Sandbox, text: str, kind: str, recursive: bool, plan: fallback.Plan
    ) -> TextValue | str:
        """The root's turns: its answer, a partial answer at a cap, or why the fallback must run."""
        if self._fallback_due(0):
            return "fallback_after is 0"
        tokens, known = self._window_of(self.s.root)
        window = Window.for_root(tokens, known, self.s.root_generation.get("max_tokens"))
        self.notes.append(f"root window: {window.describe()}")
        head, notes, shown_whole = turns.first_messages(
            text, kind, window, self._prompt_values(kind, len(text), recursive, plan)
        )
        self.notes += notes
        if self.carried:
            head[-1] = {**head[-1], "content": f"{head[-1]['content']}\n\n{self.carried}"}
        room = window.prompt_tokens - sum(message_tokens(m) for m in head)
        history: list[dict[str, Any]] = []
        fruitless = 0  # root turns without code that ran
        warned = False
        for iteration in range(1, self.s.max_iterations + 1):
            cap = self.caps.reached()
            if cap:
                return self._partial(cap)
            self._stat("rlm_iterations", 1)
            self.iterations = iteration
            try:
                record = await self._root_turn(head, history, iteration, room, window)
            except RootWindowFull as exc:
                if self.s.fallback_after >= 0:
                    return str(exc)
                return self._partial(exc.cap)
            except RlmLimit as exc:
                return self._partial(exc.cap)
            reply = record.text
            outputs, final, ran = await self._execute_blocks(sandbox, reply, iteration)
            if final is None:
                final = await repl.final_from_text(sandbox, reply, outputs)
            refused = None if final is None else self._refusal(final, text, shown_whole)
            if final is not None and refused is None:
                self.notes.append(f"path: model (FINAL after {iteration} iteration(s))")
                return self._value(final)
            if refused:
                self.notes.append(f"iteration {iteration}: FINAL({str(final)[:80]}) not accepted")
                await sandbox.execute(repl.FORGET_FINAL)  # a refused answer is forgotten
                ran = False
            self.last_prose = repl.strip_code(reply) or self.last_prose
            if warned:
                return self._partial(str(self.wrap_up))  # its last turn, and still no FINAL
            if not ran:
                fruitless += 1
                if self._fallback_due(fruitless):
                    return f"{fruitless} root turn(s) without code that runs"
            message = turns.next_message(outputs, refused)
            if self.wrap_up:
                # A cap stopped the sub-calls: one more turn for the root to answer with what it has.
                message += "\n\n" + prompts.WRAP_UP.replace("{cap}", self.wrap_up)
                warned = True
            history += [{"role": "assistant", "content": reply}, {"role": "user", "content": message}]
        return self._partial(f"max_iterations ({self.s.max_iterations})")

    def _refusal(self, final: str, text: str, shown_whole: bool) -> str | None:
        """Why a FINAL is not taken: given before any block was executed, on a context seen only in part
        (the reference implementation's first-turn safeguard), or the worked example's answer."""
        if not self.code_ran and not shown_whole:
            return prompts.EARLY_FINAL
        if final.strip() == prompts.EXAMPLE_ANSWER and prompts.EXAMPLE_ANSWER not in text:
            return prompts.COPIED_FINAL
        return None

    def _prompt_values(self, kind: str, length: int, recursive: bool, plan: fallback.Plan) -> dict[str, Any]:
        return {
            "context_type": kind,
            "context_length": length,
            "sub_context_chars": min(self.s.sub_context_chars, plan.chunk_chars),
            "recursive": recursive,
            "max_output_chars": self.s.max_output_chars,
            "max_iterations": self.s.max_iterations,
            "max_calls": self.s.max_calls,
        }

    async def _root_turn(
        self,
        head: list[dict[str, Any]],
        history: list[dict[str, Any]],
        iteration: int,
        room: int,
        window: Window,
    ) -> CallRecord:
        """The root's next reply: recent turns that fit; a full window drops one more and retries."""
        keep = self.s.history_turns
        while True:
            recent = recent_turns(history, room, keep)
            try:
                return await self._root_call(head + recent, iteration, window)
            except RunLimitExceeded as exc:
                limit = f"max_calls ({self.ctx.max_calls})" if exc.limit == "max_calls" else exc.limit
                raise RlmLimit(f"run {limit}", str(exc)) from None
            except Exception as exc:
                name = type(exc).__name__
                if name == "ContextWindowExceededError":
                    if not recent:
                        raise RootWindowFull(
                            "root context window", "the root model's context window is too small for one turn"
                        ) from None
                    keep = len(recent) // 2 - 1
                    self.notes.append(f"iteration {iteration}: context window full, kept {keep} turn(s)")
                    continue
                if name == "Timeout" and self.caps.remaining() <= 0.05:
                    raise RlmLimit(f"deadline ({self.s.deadline_s:g}s)") from None
                raise

    async def _root_call(self, messages: list[dict[str, Any]], iteration: int, window: Window) -> CallRecord:
        self.counter.calls += 1
        request = CallRequest(
            alias=self.s.root,
            messages=messages,
            name=f"root (iteration {iteration})" if self.depth == 1 else f"root d{self.depth} ({iteration})",
            parent_id=self.parent_id,
            params={**self.s.root_generation, "max_tokens": window.reply_tokens},
            timeout=max(0.001, self.caps.remaining()),
        )
        return await complete(self.ctx, request)

    async def _execute_blocks(
        self, sandbox: Sandbox, reply: str, iteration: int
    ) -> tuple[list[str], str | None, bool]:
        """Run the reply's blocks: (their outputs, a FINAL answer if one was set, whether code ran
        that had not run before)."""
        outputs: list[str] = []
        ran = False
        for number, code in enumerate(code_blocks(reply), start=1):
            name = f"iteration {iteration}" + (f".{number}" if number > 1 else "")
            result_text, status = await self._execute_one(sandbox, code, name)
            outputs.append(result_text)
            again = " ".join(code.split()) in self.seen_code  # the same code again is no progress
            self.seen_code.add(" ".join(code.split()))
            ran = ran or (status in ("ok", "error") and not again)
            self.code_ran = self.code_ran or status in ("ok", "error", "invalid")
            if status in ("ok", "error"):
                # a ready `answer` dict is the answer; a malformed one is told to the root
                taken, problem = await repl.check_answer(sandbox, self.s.sandbox.max_variable_chars)
                if problem:
                    outputs[-1] = f"{result_text.rstrip()}\n{problem}"
                    self.notes.append(f"{name}: {problem[:200]}")
                if taken or "FINAL" in code:
                    answer = await repl.final_in_repl(sandbox)
                    if answer is not None:
                        return outputs, answer, True
            elif "FINAL" in code and status == "invalid":
                answer = await repl.final_in_repl(sandbox)
                if answer is not None:
                    return outputs, answer, True
            if status == "dead":
                raise RlmLimit("repl restarts", "the REPL died too many times")
        return outputs, None, ran

    async def _execute_one(self, sandbox: Sandbox, code: str, name: str) -> tuple[str, str]:
        """Run one block as a `repl` step: (what the model sees, its outcome): one of
        repl.block_status's, or "dead" (no REPL left)."""
        async with self.rt.child_step(
            kind="repl",
            name=name,
            parent_id=self.parent_id,
            depth=self.rt.depth + self.depth * 2 - 1,
            parent_totals=self.totals,
            detail={"code": code},
        ) as step:
            self.iteration_id = step.step_id
            try:
                result = await sandbox.execute(code)
            except SandboxDead as exc:
                step.fail(str(exc))
                return f"Error: {exc}", "dead"
            finally:
                self.iteration_id = None
            shown = truncate(result.for_model(), self.s.max_output_chars)
            self.last_output = shown
            step.output, step.latency_ms = shown, result.duration_s * 1000  # the REPL's own timing
            if result.error:
                # a time limit of the REPL (wall, total or CPU time) is the step's timeout
                step.fail(result.error, status="timeout" if result.limit else "error")
        return shown, repl.block_status(result)

    # -- the fallback ----------------------------------------------------------------------------
    async def _fallback(self, sandbox: Sandbox, plan: fallback.Plan, reason: str) -> TextValue:
        """Run the built-in program (composite_cli/engine/rlm/fallback.py) in the same REPL."""
        self.path, self.reason, self.in_fallback = "fallback", reason, True
        self.wrap_up = None  # a cap the root's code met is checked again, not assumed
        cells: list[tuple[str, str, dict[str, Any]]]
        if plan.whole:
            cells = [("fallback: whole context", fallback.whole_program(), fallback.WHOLE_PARAMS)]
        else:
            left = self.s.max_calls - self.counter.calls
            if left < 2:
                return self._partial(f"max_calls ({self.s.max_calls})")
            plan = replace(plan, max_chunks=min(plan.max_chunks, left - 1))
            cells = [
                ("fallback: findings", fallback.findings_program(plan), fallback.NOTE_PARAMS),
                ("fallback: answer", fallback.answer_program(), fallback.ANSWER_PARAMS),
            ]
        self.notes.append(f"path: fallback ({reason}); {plan.describe()}")
        for name, code, params in cells:
            cap = self.caps.reached()
            if cap:
                return self._partial(cap)
            self.sub_params = params
            shown, status = await self._execute_one(sandbox, code, name)
            if self.wrap_up:
                return self._partial(self.wrap_up)
            if status == "killed":
                return self._partial(f"repl_timeout ({self.s.sandbox.timeout_s:g}s)")
            if status != "ok":
                raise RlmFallbackError(
                    f"the fallback program failed in {name!r}: {shown.strip().splitlines()[-1]}"
                )
        answer = await repl.final_in_repl(sandbox)
        if answer is None:
            raise RlmFallbackError("the fallback program ended without an answer")
        return self._value(answer)

    # -- results ----------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"path": self.path, "iterations": self.iterations, "sub_calls": self.sub_calls}
        if self.path == "fallback":
            meta["reason"] = self.reason
        if self.isolation:
            meta["sandbox"] = self.isolation
        key = self.s.session_key if self.depth == 1 else None
        if key:
            turn = (self.continued or 0) + 1
            meta["session"] = {"id": key[3], "turn": turn, "continued": self.continued is not None}
        return {"rlm": meta}

    def _value(self, answer: str) -> TextValue:
        return TextValue(answer, notes=self._meta())

    def _partial(self, cap: str) -> TextValue:
        self.notes.append(f"stopped: {cap}")
        answer = self.last_prose or self.last_output or ""
        meta = self._meta()
        meta["rlm"]["stopped_by"] = cap
        return TextValue(answer, finish_reason="length", partial=True, stopped_by=cap, notes=meta)
