"""Stage 2 of the REPL process: the persistent Python REPL that runs model-written code.

Started by `confine.py` (already confined by the kernel where possible) as
`python -I -S -B -c <bootstrap> <config JSON>`. Before any model code runs it installs the audit
hook (`policy.py`), replaces stdout/stderr with a bounded buffer, and receives the initial
variables over the channel (a unix socket on fd 3 created by the parent before the network was
cut). Then it serves `exec`, `get` and `set` requests one at a time.

Model code reaches the parent only through `llm_query`, `llm_query_batched` and `rlm_query`:
each sends one `query` frame and blocks until the `answer` frame with the same id arrives.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import keyword
import linecache
import os
import signal
import socket
import sys
import traceback
from typing import Any

from composite_cli.sandbox.protocol import FrameError, FrameSocket

_CELL_PREFIX = "<cell "
_POLICY_MODULE = "composite_cli.sandbox.policy"
# Deep recursion: the recursion limit (which CPython 3.11 also applies to C recursion, e.g. json
# or repr of nested lists) is capped by the stack's size and at MAX_RECURSION, so that a
# RecursionError comes long before the stack overflows (SIGSEGV).
STACK_BYTES = 64 * 1024 * 1024
MAX_RECURSION = 10_000
# Traceback lines shown for an error: the first and last few frames of the model's code.
_TRACEBACK_HEAD = 10
_TRACEBACK_TAIL = 10
# Not a real directory: importlib looks for cached bytecode there, finds none and compiles the
# source, so model code never gets marshal.loads (which the policy refuses) to run on its data.
_NO_PYCACHE = "/nonexistent/composite-sandbox-pycache"


class LLMQueryError(RuntimeError):
    """Raised in model code when an llm_query / rlm_query call failed in the parent."""


class BoundedOutput(io.TextIOBase):
    """stdout+stderr of one execution: keeps the first `limit` characters, counts the rest."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.total = 0

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        self.total += n
        room = self.limit - self.kept
        if room > 0:
            piece = s[:room]
            self.parts.append(piece)
            self.kept += len(piece)
        return n

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def text(self) -> str:
        return "".join(self.parts)


class _State:
    """Interrupt bookkeeping: SIGINT raises KeyboardInterrupt only inside model code."""

    def __init__(self) -> None:
        self.interruptible = False
        self.interrupted = False


class Repl:
    """The REPL: a namespace, the channel, and the handlers of parent requests."""

    def __init__(self, channel: FrameSocket, config: dict[str, Any]):
        self.channel = channel
        self.max_output = int(config["max_output_chars"])
        self.max_error = int(config["max_error_chars"])
        self.max_value = int(config["max_variable_chars"])
        self.state = _State()
        self.exec_id = 0
        self.query_id = 0
        self.cells = 0
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}

    # -- what model code can call ----------------------------------------------------------------

    def install_functions(self, functions: list[str]) -> None:
        def llm_query(prompt: str) -> str:
            """Ask a sub-model; returns its answer."""
            _require_str(prompt, "prompt")
            reply = self._query({"kind": "llm", "prompts": [prompt]}, whole=True)
            text = str(reply.get("value")[0])
            if reply.get("failed"):
                raise LLMQueryError(text)  # one prompt: its failure is the call's
            return text

        def llm_query_batched(prompts: list[str]) -> list[str]:
            """Ask a sub-model several prompts at once (answered in parallel); returns the answers.
            A prompt whose call failed has "Error: <why>" in its slot; the others keep their answers."""
            if not isinstance(prompts, list | tuple):
                raise TypeError("llm_query_batched() takes a list of prompt strings")
            prompts = list(prompts)
            for p in prompts:
                _require_str(p, "every prompt")
            if not prompts:
                return []
            return [str(a) for a in self._query({"kind": "llm", "prompts": prompts})]

        def rlm_query(prompt: str, context: str) -> str:
            """Ask a recursive language model about `context`; returns its answer."""
            _require_str(prompt, "prompt")
            _require_str(context, "context")
            return str(self._query({"kind": "rlm", "prompt": prompt, "context": context}))

        available = {"llm_query": llm_query, "llm_query_batched": llm_query_batched, "rlm_query": rlm_query}
        for name in functions:
            self.namespace[name] = available[name]
        self.namespace["LLMQueryError"] = LLMQueryError

    def _query(self, request: dict[str, Any], whole: bool = False) -> Any:
        """The answer's value (or, with `whole`, the answer message) for one query."""
        state = self.state
        was = state.interruptible
        state.interruptible = False  # from here the SIGINT handler only records the interrupt
        try:
            if state.interrupted:
                reply = None
            else:
                self.query_id += 1
                self._send(dict(request, type="query", id=self.query_id, exec=self.exec_id))
                reply = self._recv()
                if reply.get("type") != "answer" or reply.get("id") != self.query_id:
                    _die("unexpected reply to a query")
        finally:
            state.interruptible = was
        if state.interrupted:
            raise KeyboardInterrupt
        assert reply is not None
        if not reply.get("ok"):
            raise LLMQueryError(str(reply.get("error", "the query failed")))
        return reply if whole else reply.get("value")

    # -- parent requests -------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            request = self._recv()
            kind = request.get("type")
            if kind == "exec":
                self.exec_id = int(request["id"])
                self._send(self.execute(str(request["code"]), self.exec_id))
            elif kind == "get":
                self.exec_id = int(request["id"])
                self._send(self.get_value(str(request["name"]), self.exec_id))
            elif kind == "set":
                self.exec_id = int(request["id"])
                self._send(self.set_values(request.get("variables"), self.exec_id))
            else:
                _die(f"unexpected request {kind!r}")

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.channel.send(message)
        except OSError:
            os._exit(0)  # the parent is gone

    def _recv(self) -> dict[str, Any]:
        try:
            message = self.channel.recv()
        except (OSError, FrameError):
            message = None
        if message is None:
            os._exit(0)  # the parent closed the channel
        return message

    def execute(self, code: str, exec_id: int) -> dict[str, Any]:
        out = BoundedOutput(self.max_output)
        self.cells += 1
        filename = f"{_CELL_PREFIX}{self.cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        error: str | None = None
        state = self.state
        state.interrupted = False
        sys.stdout = sys.stderr = out
        try:
            try:
                state.interruptible = True
                try:
                    self._run(code, filename)
                except BaseException as exc:  # noqa: BLE001 - every error goes back to the model
                    error = self._format_error(exc)
                finally:
                    state.interruptible = False
            except BaseException:  # noqa: BLE001 - an interrupt landing in our own handler
                error = error or "KeyboardInterrupt"
        finally:
            sys.stdout = sys.stderr = sys.__stderr__
        return {
            "type": "result",
            "id": exec_id,
            "output": out.text(),
            "output_chars": out.total,
            "error": error,
            "interrupted": state.interrupted,
        }

    def _run(self, code: str, filename: str) -> None:
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body[-1].value)
            del tree.body[-1]
        # Running the model's code is this process's job; the sandbox is around it.
        exec(compile(tree, filename, "exec", dont_inherit=True), self.namespace)  # noqa: S102
        if last is not None:
            # Like the interactive interpreter: show the value of a final bare expression.
            value = eval(compile(last, filename, "eval", dont_inherit=True), self.namespace)  # noqa: S307
            if value is not None:
                print(repr(value))

    def _format_error(self, exc: BaseException) -> str:
        frames, skipped = _cell_frames(exc.__traceback__)
        lines = traceback.format_list(traceback.StackSummary.extract(frames, lookup_lines=True))
        if skipped:
            lines.insert(_TRACEBACK_HEAD, f"  [... {skipped} more frames]\n")
        text = "".join(lines) + "".join(traceback.format_exception_only(type(exc), exc))
        if lines:
            text = "Traceback (most recent call last):\n" + text
        text = text.rstrip("\n")
        if isinstance(exc, RecursionError):
            text += f" (the sandbox's recursion limit is {sys.getrecursionlimit()})"
        if len(text) > self.max_error:
            text = text[: self.max_error] + f"\n[... truncated {len(text) - self.max_error} chars]"
        return text

    def set_values(self, variables: Any, exec_id: int) -> dict[str, Any]:
        """Define the parent's variables (a kept REPL's next turn: its context)."""
        if not isinstance(variables, dict):
            _die("a set request without variables")
        for name in variables:
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                _die(f"bad variable name {name!r}")
        self.namespace.update(variables)
        return {"type": "value", "id": exec_id, "ok": True, "interrupted": False}

    def get_value(self, name: str, exec_id: int) -> dict[str, Any]:
        reply: dict[str, Any] = {"type": "value", "id": exec_id, "ok": False}
        if not name.isidentifier() or name not in self.namespace:
            reply["error"] = f"no REPL variable named {name!r}"
            return reply
        sink = BoundedOutput(0)
        sys.stdout = sys.stderr = sink
        self.state.interrupted = False
        try:
            try:
                self.state.interruptible = True
                try:
                    text = str(self.namespace[name])
                finally:
                    self.state.interruptible = False
                if not isinstance(text, str):
                    raise TypeError("__str__ returned a non-string")
                if len(text) > self.max_value:
                    reply["error"] = f"str({name}) has {len(text)} characters, more than {self.max_value}"
                else:
                    reply.update(ok=True, value=text)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                reply["error"] = f"str({name}) failed: {self._format_error(exc)}"
        finally:
            sys.stdout = sys.stderr = sys.__stderr__
        reply["interrupted"] = self.state.interrupted
        return reply


def _cell_frames(tb: Any) -> tuple[list[tuple[Any, int]], int]:
    """(frame, line) of the model's own code in a traceback, first and last few; and how many more.

    A traceback can be a million frames deep (sys.setrecursionlimit); formatting them all would
    take minutes, so only the ends are kept.
    """
    head: list[tuple[Any, int]] = []
    tail: list[tuple[Any, int]] = []
    seen = 0
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename.startswith(_CELL_PREFIX):
            seen += 1
            if len(head) < _TRACEBACK_HEAD:
                head.append((frame, tb.tb_lineno))
            else:
                tail.append((frame, tb.tb_lineno))
                if len(tail) > _TRACEBACK_TAIL:
                    del tail[0]
        tb = tb.tb_next
    return head + tail, seen - len(head) - len(tail)


def _cap_recursion() -> None:
    """Cap sys.setrecursionlimit so that a RecursionError comes before the C stack overflows.

    The cap follows the stack's size (RLIMIT_STACK, which stage 1 raises to STACK_BYTES where
    it can): about 6 KiB of C stack per level leaves a wide margin.
    """
    import resource

    size = resource.getrlimit(resource.RLIMIT_STACK)[0]
    cap = MAX_RECURSION if size == resource.RLIM_INFINITY else max(1000, min(MAX_RECURSION, size // 6144))
    original = sys.setrecursionlimit

    def setrecursionlimit(limit: int) -> None:
        """Set the recursion limit (capped by the sandbox, so that the stack cannot overflow)."""
        original(min(int(limit), cap))

    sys.setrecursionlimit = setrecursionlimit
    original(min(sys.getrecursionlimit(), cap))


def _refuse_fork_exec(*args: Any, **kwargs: Any) -> None:
    raise PermissionError("sandbox: starting programs is not allowed (_posixsubprocess.fork_exec)")


def _require_str(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")


def _die(reason: str) -> None:
    print(f"sandbox child: {reason}", file=sys.__stderr__, flush=True)
    os._exit(70)


def main(argv: list[str]) -> None:
    """Run the REPL as `argv[1]` (JSON) says; never returns."""
    config: dict[str, Any] = json.loads(argv[1])
    channel = FrameSocket(socket.socket(fileno=config["fd"]))
    repl = Repl(channel, config)
    state = repl.state

    def on_sigint(signum: int, frame: Any) -> None:
        state.interrupted = True
        if state.interruptible:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write raises OSError instead
    _cap_recursion()
    sys.pycache_prefix = _NO_PYCACHE
    sys.path[:] = [p for p in sys.path if p != config["package_root"]]
    sys.argv = [""]
    if config.get("audit_hook", True):  # off only in the tests that prove the kernel layers alone
        # fork_exec raises no audit event: import it now and replace it; the hook refuses a
        # re-import.
        import _posixsubprocess

        _posixsubprocess.fork_exec = _refuse_fork_exec  # type: ignore[assignment]
        from composite_cli.sandbox import policy

        policy.install(
            workdir=config["workdir"],
            read_dirs=config["read_dirs"],
            read_files=config["read_files"],
            hidden_dirs=config["hidden_dirs"],
            extension_dir=config["extension_dir"],
        )
        del policy
    # Nothing in Python refers to the hook now; drop the module so model code finds no policy.
    sys.modules.pop(_POLICY_MODULE, None)
    package = sys.modules.get("composite_cli.sandbox")
    if package is not None and hasattr(package, "policy"):
        delattr(package, "policy")
    # From here on, everything runs under the policy.

    start = repl._recv()
    if start.get("type") != "start":
        _die("expected a start message")
    for name in start["variables"]:
        if not name.isidentifier() or keyword.iskeyword(name):
            _die(f"bad variable name {name!r}")
    repl.namespace.update(start["variables"])
    repl.install_functions(list(start["functions"]))
    channel.send({"type": "ready", "pid": os.getpid(), "isolation": config["layers"]})
    repl.serve()
