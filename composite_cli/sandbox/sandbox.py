"""The parent side of the sandboxed REPL: `Sandbox` and `ExecResult`."""

from __future__ import annotations

import asyncio
import contextlib
import keyword
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from composite_cli.redact import redact_text
from composite_cli.sandbox.errors import (
    SandboxDead,
    SandboxError,
    SandboxStartError,
    SandboxVariableError,
)
from composite_cli.sandbox.limits import SandboxLimits
from composite_cli.sandbox.process import ChildProcess
from composite_cli.sandbox.protocol import encode

LlmQueryCallback = Callable[[list[str]], Awaitable[list[str]]]
RlmQueryCallback = Callable[[str, str], Awaitable[str]]

_POLL_S = 0.1
_FUNCTIONS = ("llm_query", "llm_query_batched", "rlm_query", "LLMQueryError")
_KERNEL_LAYERS = ("network", "files", "syscalls", "disk")


class FailedItem(str):
    """One slot of an llm_query callback's answers whose call failed; the text says why ("Error: ...").

    In `llm_query_batched` the code gets the text in that slot, the other slots keep their answers;
    a single `llm_query` raises LLMQueryError with it."""

    __slots__ = ()


@dataclass(frozen=True)
class ExecResult:
    """What one execution produced, as the model should see it.

    `output` is stdout and stderr interleaved as printed, cut to `max_output_chars` with a
    "[... truncated N chars]" marker. `error` is the exception (with the model's own traceback
    lines) or the limit that was hit, None on success. `killed` means the process was killed:
    the REPL's variables are gone. `limit` names the limit that was hit ("timeout",
    "total_timeout", "cpu") or is None.
    """

    output: str
    error: str | None
    duration_s: float
    truncated: bool
    killed: bool
    limit: str | None = None

    def for_model(self) -> str:
        """Output and error as one text block, the way a REPL shows them."""
        parts = [self.output.rstrip("\n")] if self.output else []
        if self.error:
            parts.append(self.error)
        return "\n".join(parts) if parts else "(no output)"


@dataclass
class _Reply:
    message: dict[str, Any] | None  # the child's result/value message, None when it was killed
    limit: str | None
    death: str | None  # why the process is gone, when it is


class Sandbox:
    """A persistent, sandboxed Python REPL for one RLM run (see `composite_cli.sandbox`).

    Use as `async with Sandbox(limits=...) as sb: await sb.start({...}); await sb.execute(code)`.
    Calls are serialized; `close()` may be called from anywhere and kills the process at once.
    """

    def __init__(
        self,
        *,
        limits: SandboxLimits | None = None,
        on_llm_query: LlmQueryCallback | None = None,
        on_rlm_query: RlmQueryCallback | None = None,
        tmp_root: str | None = None,
    ):
        self.limits = limits or SandboxLimits()
        self._on_llm_query = on_llm_query
        self._on_rlm_query = on_rlm_query
        self._tmp_root = tmp_root
        self._lock = asyncio.Lock()
        self._child: ChildProcess | None = None
        self._start_frame: bytes | None = None
        self._start_message: dict[str, Any] = {}
        self._variable_names: list[str] = []
        self._closed = False
        self._restarts = 0
        self._death: str | None = None
        self._request_id = 0
        self.isolation: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def pid(self) -> int | None:
        """Process id of the running REPL (its process group id too), or None."""
        return self._child.pid if self._child and self._child.process else None

    @property
    def workdir(self) -> str | None:
        """The REPL's temporary working directory (deleted when the process goes)."""
        return self._child.workdir if self._child else None

    async def start(self, variables: Mapping[str, Any] | None = None) -> None:
        """Start the REPL with these variables defined (str, int, float, bool, None, lists, dicts).

        Raises SandboxStartError if the process cannot start, or if `require_kernel_isolation`
        is set and a kernel layer is missing.
        """
        if self._closed:
            raise SandboxDead("the sandbox is closed")
        if self._start_frame is not None:
            raise SandboxError("the sandbox is already started")
        variables = _checked_variables(variables)
        functions = ["llm_query", "llm_query_batched"] if self._on_llm_query else []
        if self._on_rlm_query:
            functions.append("rlm_query")
        try:
            frame = encode({"type": "start", "variables": variables, "functions": functions})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"REPL variables must be JSON values: {exc}") from None
        async with self._lock:
            self._start_frame = frame
            self._start_message = {"type": "start", "variables": variables, "functions": functions}
            self._variable_names = list(variables)
            try:
                await self._launch()
            except BaseException:
                self._start_frame = None
                raise

    async def set_variables(self, variables: Mapping[str, Any]) -> None:
        """Define (or replace) these variables in the running REPL, e.g. the next turn's context of a
        kept REPL; a REPL restarted after a kill starts with them too. Raises SandboxDead when
        the REPL is gone, SandboxError when the REPL did not take them."""
        variables = _checked_variables(variables)
        message = dict(self._start_message)
        message["variables"] = {**message.get("variables", {}), **variables}
        try:
            start_frame = encode(message)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"REPL variables must be JSON values: {exc}") from None
        async with self._lock:
            child = await self._ensure_running()
            self._request_id += 1
            reply = await self._request(
                child, {"type": "set", "id": self._request_id, "variables": variables}, "value"
            )
            if reply.message is None:
                raise SandboxDead(f"the REPL did not take the variables: {self._killed_text(reply)}")
            self._start_frame, self._start_message = start_frame, message
            self._variable_names = list(message["variables"])

    def set_handlers(
        self, *, on_llm_query: LlmQueryCallback | None, on_rlm_query: RlmQueryCallback | None
    ) -> None:
        """Answer the REPL's queries with these callbacks from now on (a kept REPL's next turn);
        the REPL's functions stay those it started with."""
        self._on_llm_query = on_llm_query
        self._on_rlm_query = on_rlm_query

    @property
    def usable(self) -> bool:
        """Whether the next request can run: not closed, and running or allowed to restart."""
        if self._closed or self._start_frame is None:
            return False
        if self._child is not None:
            return True
        return self.limits.restart_after_kill and self._restarts < self.limits.max_restarts

    def abandon(self) -> None:
        """Kill the process group now, without awaiting (when the event loop that ran the REPL is
        gone); its directory goes when the process exits at the latest. Safe to call twice."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            child.kill()

    async def close(self) -> None:
        """Kill the process group and delete the working directory; safe to call twice."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            await child.dispose()

    async def _launch(self) -> None:
        assert self._start_frame is not None
        child = ChildProcess(self.limits, self._tmp_root)
        try:
            try:
                await child.launch()
            except OSError as exc:
                raise SandboxStartError(f"could not start the sandboxed REPL: {exc}") from exc
            sent = await child.send(self._start_frame, self.limits.start_timeout_s)
            ready = await child.next_frame(self.limits.start_timeout_s) if sent else None
        except BaseException:
            await child.dispose()
            raise
        if not isinstance(ready, dict) or ready.get("type") != "ready":
            code = await child.returncode(1.0)
            detail = redact_text(child.stderr_text()[-2000:]) or "no diagnostics"
            await child.dispose()
            what = "did not answer in time" if ready is False else f"failed (exit status {code})"
            raise SandboxStartError(f"the sandboxed REPL {what}: {detail}")
        isolation = ready.get("isolation")
        self.isolation = {str(k): str(v) for k, v in isolation.items()} if isinstance(isolation, dict) else {}
        self.isolation["audit hook"] = "installed"
        missing = [
            k for k in _KERNEL_LAYERS if self.isolation.get(k, "unavailable").startswith("unavailable")
        ]
        if self.limits.require_kernel_isolation and missing:
            await child.dispose()
            details = "; ".join(f"{k}: {self.isolation.get(k, 'unavailable')}" for k in missing)
            raise SandboxStartError(f"kernel isolation is required but missing ({details})")
        self._child = child
        self._death = None

    async def _ensure_running(self) -> ChildProcess:
        if self._closed:
            raise SandboxDead("the sandbox is closed")
        if self._start_frame is None:
            raise SandboxError("call start() before using the sandbox")
        if self._child is not None:
            return self._child
        if not self.limits.restart_after_kill or self._restarts >= self.limits.max_restarts:
            raise SandboxDead(f"the REPL process was killed ({self._death}) and will not be restarted")
        self._restarts += 1
        await self._launch()
        assert self._child is not None
        return self._child

    # -- requests --------------------------------------------------------------------------------

    async def execute(self, code: str) -> ExecResult:
        """Run `code` in the REPL; never raises for problems of the code itself.

        Raises SandboxDead when the sandbox is closed or was killed too often to restart.
        """
        async with self._lock:
            child = await self._ensure_running()
            started = time.monotonic()
            self._request_id += 1
            reply = await self._request(
                child, {"type": "exec", "id": self._request_id, "code": code}, "result"
            )
            duration = time.monotonic() - started
        if reply.message is None:
            return ExecResult("", self._killed_text(reply), duration, False, True, reply.limit)
        return self._exec_result(reply.message, reply.limit, duration)

    async def get_variable(self, name: str) -> str:
        """str() of a REPL variable (for FINAL_VAR); SandboxVariableError if it is missing."""
        if not isinstance(name, str) or not name.isidentifier():
            raise SandboxVariableError(f"not a valid variable name: {name!r}")
        async with self._lock:
            child = await self._ensure_running()
            self._request_id += 1
            reply = await self._request(child, {"type": "get", "id": self._request_id, "name": name}, "value")
        message = reply.message
        if message is None:
            raise SandboxVariableError(f"could not read {name!r}: {self._killed_text(reply)}")
        if reply.limit is not None:
            raise SandboxVariableError(f"str({name}) was interrupted: {self._limit_text(reply.limit)}")
        value = message.get("value")
        if not message.get("ok") or not isinstance(value, str):
            raise SandboxVariableError(_clean(message.get("error"))[:2000] or f"could not read {name!r}")
        return _clean(value)

    async def _request(self, child: ChildProcess, request: dict[str, Any], expect: str) -> _Reply:
        """Send one request and serve the child's queries until its reply, enforcing limits."""
        try:
            reply = await self._serve(child, request, expect)
        except BaseException:
            # Cancelled (or a bug): the REPL is in an unknown state, so it goes.
            await self._discard(child, "the execution was cancelled")
            raise
        if reply.death is not None:
            await self._discard(child, reply.death)
        return reply

    async def _serve(self, child: ChildProcess, request: dict[str, Any], expect: str) -> _Reply:
        limits = self.limits
        request_id = request["id"]
        started = time.monotonic()
        if not await child.send(encode(request), limits.total_timeout_s):
            return _Reply(None, None, await self._send_failed(child, None))
        waited = 0.0  # time spent waiting for query callbacks
        cpu_start = child.cpu_seconds()
        hit: str | None = None
        interrupted_at = 0.0
        while True:
            now = time.monotonic()
            if hit is None:
                hit = self._limit_hit(now - started, waited, child.cpu_seconds() - cpu_start)
                if hit is not None:
                    interrupted_at = now
                    child.interrupt()
            if hit is not None and now - interrupted_at >= limits.interrupt_grace_s:
                child.kill()
                return _Reply(None, hit, f"{self._limit_text(hit)} and did not stop when interrupted")
            if hit is None:
                running = now - started - waited
                wait = min(_POLL_S, limits.timeout_s - running, limits.total_timeout_s - (now - started))
            else:
                wait = min(_POLL_S, limits.interrupt_grace_s - (now - interrupted_at))
            item = await child.next_frame(max(wait, 0.001))
            if item is False:
                continue
            if item is None or isinstance(item, BaseException):
                return _Reply(None, hit, await self._death_reason(child, item, hit))
            assert isinstance(item, dict)
            kind = item.get("type")
            if kind == "query" and item.get("exec") == request_id:
                if hit is not None:
                    refusal = _answer_error(item, "interrupted: the execution hit a limit")
                    if not await child.send(encode(refusal), limits.interrupt_grace_s):
                        return _Reply(None, hit, await self._send_failed(child, hit))
                    continue
                asked = time.monotonic()
                remaining = limits.total_timeout_s - (asked - started)
                answer, timed_out = await self._answer(item, remaining)
                waited += time.monotonic() - asked
                if timed_out:
                    hit, interrupted_at = "total_timeout", time.monotonic()
                    child.interrupt()
                budget = max(limits.total_timeout_s - (time.monotonic() - started), limits.interrupt_grace_s)
                if not await child.send(encode(answer), budget):
                    return _Reply(None, hit, await self._send_failed(child, hit))
            elif kind == expect and item.get("id") == request_id:
                return _Reply(item, hit, None)
            else:
                child.kill()
                detail = f"unexpected {str(kind)[:40]!r} message"
                return _Reply(None, hit, f"SandboxProtocolError: the REPL process sent an {detail}")

    def _limit_hit(self, elapsed: float, waited: float, cpu: float) -> str | None:
        limits = self.limits
        if elapsed - waited >= limits.timeout_s:
            return "timeout"
        if elapsed >= limits.total_timeout_s:
            return "total_timeout"
        if cpu >= limits.cpu_s:
            return "cpu"
        return None

    async def _answer(self, query: dict[str, Any], remaining: float) -> tuple[dict[str, Any], bool]:
        """Run the callback for one query; (answer frame, whether the total time ran out)."""
        kind = query.get("kind")
        call: Awaitable[Any]
        if kind == "llm" and self._on_llm_query is not None:
            prompts = query.get("prompts")
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                return _answer_error(query, "malformed llm_query request"), False
            call = self._on_llm_query(list(prompts))
        elif kind == "rlm" and self._on_rlm_query is not None:
            prompt, context = query.get("prompt"), query.get("context")
            if not isinstance(prompt, str) or not isinstance(context, str):
                return _answer_error(query, "malformed rlm_query request"), False
            call = self._on_rlm_query(prompt, context)
        else:
            return _answer_error(query, f"{str(kind)[:20]}_query is not available in this REPL"), False
        task = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait({task}, timeout=max(remaining, 0.0))
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if not done:
            limit = self.limits.total_timeout_s
            return _answer_error(query, f"TimeoutError: the execution took more than {limit:g} s"), True
        try:
            value = task.result()
        except Exception as exc:  # noqa: BLE001 - the model sees the callback's error as an exception
            return _answer_error(query, redact_text(f"{type(exc).__name__}: {exc}")), False
        if kind == "llm":
            prompts = query["prompts"]
            if (
                not isinstance(value, list)
                or len(value) != len(prompts)
                or not all(isinstance(v, str) for v in value)
            ):
                return _answer_error(query, "the llm_query handler returned an invalid result"), False
        elif not isinstance(value, str):
            return _answer_error(query, "the rlm_query handler returned an invalid result"), False
        answer: dict[str, Any] = {"type": "answer", "id": query.get("id"), "ok": True, "value": value}
        if kind == "llm":
            failed = [i for i, v in enumerate(value) if isinstance(v, FailedItem)]
            if failed:
                answer["failed"] = failed
                answer["value"] = [redact_text(v) if isinstance(v, FailedItem) else v for v in value]
        return answer, False

    # -- results and deaths ----------------------------------------------------------------------

    def _exec_result(self, message: dict[str, Any], limit: str | None, duration: float) -> ExecResult:
        limits = self.limits
        output = _clean(message.get("output"))
        total = message.get("output_chars")
        total = total if isinstance(total, int) and total >= len(output) else len(output)
        output = output[: limits.max_output_chars]
        truncated = total > len(output)
        if truncated:
            output += f"\n[... truncated {total - len(output)} chars]"
        error = _clean(message.get("error"))[: limits.max_error_chars * 2] or None
        if limit is not None and message.get("interrupted") is False:
            limit = None  # the code finished on its own just as the limit was reached
        if limit is not None:
            where = _traceback_lines(error)
            error = f"{self._limit_text(limit)} and was interrupted (REPL variables are kept)" + where
        return ExecResult(output, error, duration, truncated, False, limit)

    def _limit_text(self, limit: str) -> str:
        limits = self.limits
        if limit == "timeout":
            return f"TimeoutError: the code ran for more than {limits.timeout_s:g} s"
        if limit == "total_timeout":
            return f"TimeoutError: the execution took more than {limits.total_timeout_s:g} s in all"
        return f"TimeoutError: the code used more than {limits.cpu_s:g} s of CPU time"

    async def _death_reason(self, child: ChildProcess, item: BaseException | None, hit: str | None) -> str:
        if isinstance(item, BaseException):
            child.kill()
            return f"SandboxProtocolError: the REPL process sent an invalid message ({item})"
        code = await child.returncode()
        if child.killed_by_us:
            if hit is not None:
                return f"{self._limit_text(hit)} and did not stop when interrupted"
            return "SandboxError: the REPL was closed"
        if code is None:
            child.kill()
            return "SandboxError: the REPL process closed its channel"
        if code < 0:
            sig = -code
            if sig == signal.SIGKILL:
                limit = self.limits.memory_mb
                if child.out_of_memory():
                    return (
                        f"MemoryError: the REPL process was killed for going over its memory limit "
                        f"({limit} MB, the files in its directory included)"
                    )
                return f"MemoryError: the REPL process was killed (likely out of memory; limit {limit} MB)"
            if sig == signal.SIGXCPU:
                total = self.limits.process_cpu_s
                return f"TimeoutError: the REPL process used up its total CPU time ({total} s)"
            if sig == signal.SIGSEGV:
                return "SystemError: the REPL process crashed (SIGSEGV: stack overflow, e.g. deep recursion)"
            name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
            return f"SystemError: the REPL process crashed ({name})"
        return f"SystemExit: the REPL process exited with status {code}"

    async def _send_failed(self, child: ChildProcess, hit: str | None) -> str:
        if await child.returncode(0.5) is None:
            child.kill()
            return "SandboxError: the REPL process stopped reading its channel"
        return await self._death_reason(child, None, hit)

    def _killed_text(self, reply: _Reply) -> str:
        text = f"{reply.death}. The REPL process is gone and its variables are lost"
        if self._closed:
            return f"{text}; the sandbox is closed."
        if self.limits.restart_after_kill and self._restarts < self.limits.max_restarts:
            names = ", ".join(self._variable_names)
            initial = f" with the initial variables ({names})" if names else ""
            return f"{text}; the next execution starts a fresh REPL{initial}."
        return f"{text}; the REPL will not be restarted."

    async def _discard(self, child: ChildProcess, death: str) -> None:
        if self._child is child:
            self._child = None
        self._death = death
        await child.dispose()


def _checked_variables(variables: Mapping[str, Any] | None) -> dict[str, Any]:
    variables = dict(variables or {})
    for name in variables:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"not a valid Python variable name: {name!r}")
        if name in _FUNCTIONS:
            raise ValueError(f"variable name {name!r} is reserved for the REPL's functions")
    return variables


def _answer_error(query: dict[str, Any], error: str) -> dict[str, Any]:
    return {"type": "answer", "id": query.get("id"), "ok": False, "error": error}


def _clean(text: Any) -> str:
    """A str that encodes as UTF-8 (model code can print lone surrogates)."""
    if not isinstance(text, str):
        return ""
    return text.encode("utf-8", "replace").decode("utf-8")


def _traceback_lines(error: str | None) -> str:
    """The model-code location lines of an interrupted execution's traceback."""
    if not error:
        return ""
    lines = [line for line in error.splitlines() if line.startswith("  ")]
    return ("\n" + "\n".join(lines)) if lines else ""
