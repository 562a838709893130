"""Kept REPLs: an `rlm` step with `persist: true` keeps its REPL after a turn, so that the next turn
of the same conversation (the same session id) continues in it and sees its variables.

After alexzhang13/rlm's `persistent=True`, where one RLM object keeps one environment across
`completion()` calls. Here a turn names its conversation with an explicit session id (a request's
`composite.params.session`): a hash of the prior messages would let anyone who can guess a
conversation's text continue it, and two conversations with the same start would share a REPL.

Bounds: a kept REPL is closed after `session_idle` seconds without a turn, at most
MAX_KEPT are alive in one process (the least recently used idle one goes first), each keeps the
REPL's memory limit, and every REPL process is killed when this process exits (the sandbox's
finalizer). The key holds the mode, the step, the caller (`user`) and the id, so one caller cannot
reach another's REPL by naming its session.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from composite_cli.errors import BadParameter
from composite_cli.sandbox import Sandbox

MAX_KEPT = 8  # kept REPLs alive in one process (each up to its `repl_memory_mb`)
MAX_IDLE_S = 86_400.0
SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Key = tuple[str, str, str, str]  # (mode, step id, user, session id)


@dataclass(eq=False)
class Kept:
    """One kept REPL between turns."""

    key: Key
    sandbox: Sandbox
    shape: object  # the REPL's limits and functions: a turn that asks for others starts a new one
    loop: asyncio.AbstractEventLoop
    turns: int = 0  # turns that ran in it
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None

    @property
    def session(self) -> str:
        return self.key[3]


class KeptRepls:
    """The kept REPLs of this process."""

    def __init__(self, max_kept: int = MAX_KEPT):
        self.max_kept = max_kept
        self._kept: OrderedDict[Key, Kept] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._kept)

    def take(self, key: Key, shape: object, param: str) -> tuple[Kept | None, str]:
        """The kept REPL of `key` for this turn (marked busy), or None and why a new one starts.
        BadParameter when another request is in that session now."""
        kept = self._kept.get(key)
        if kept is None:
            return None, "first turn of the session"
        if kept.busy:
            raise BadParameter(
                f"session {key[3]!r} is answering another request; send the next turn when it has finished",
                param,
            )
        why = ""
        if kept.loop is not _running_loop():
            why = "its REPL belonged to an event loop that has ended"
        elif not kept.sandbox.usable:
            why = "its REPL was closed"
        elif kept.shape != shape:
            why = "the REPL's limits changed"
        if why:
            self._drop(kept)
            return None, f"a new REPL: {why}"
        if kept.timer is not None:
            kept.timer.cancel()
            kept.timer = None
        kept.busy = True
        self._kept.move_to_end(key)
        return kept, ""

    def keep(self, key: Key, sandbox: Sandbox, shape: object) -> Kept | None:
        """Register a new REPL (busy) for `key`; None when MAX_KEPT others are all busy."""
        if len(self._kept) >= self.max_kept:
            idle = next((k for k in self._kept.values() if not k.busy), None)
            if idle is None:
                return None
            self._drop(idle)
        kept = Kept(key, sandbox, shape, asyncio.get_running_loop(), busy=True)
        self._kept[key] = kept
        return kept

    def release(self, kept: Kept, idle_s: float) -> None:
        """The turn is over: the REPL waits `idle_s` seconds for the next one, then goes."""
        kept.busy = False
        kept.turns += 1
        kept.last_used = time.monotonic()
        if self._kept.get(kept.key) is not kept:
            return
        kept.timer = kept.loop.call_later(min(idle_s, MAX_IDLE_S), self._expire, kept)

    def discard(self, kept: Kept) -> None:
        """The turn failed: its REPL is not kept (the caller closes it)."""
        if self._kept.get(kept.key) is kept:
            del self._kept[kept.key]
        if kept.timer is not None:
            kept.timer.cancel()
            kept.timer = None

    async def close_all(self) -> None:
        """Close every kept REPL and wait until they are gone (a server's shutdown, tests; the
        process's exit kills them anyway, through the sandbox's finalizers)."""
        for kept in list(self._kept.values()):
            self._drop(kept)
        if _closing:
            await asyncio.gather(*_closing, return_exceptions=True)

    def get(self, key: Key) -> Kept | None:
        """The kept REPL of `key`, if any (for the trace and tests)."""
        return self._kept.get(key)

    def _expire(self, kept: Kept) -> None:
        if self._kept.get(kept.key) is kept and not kept.busy:
            self._drop(kept)

    def _drop(self, kept: Kept) -> None:
        self._kept.pop(kept.key, None)
        if kept.timer is not None:
            kept.timer.cancel()
            kept.timer = None
        if kept.loop is _running_loop() and not kept.loop.is_closed():
            task = kept.loop.create_task(kept.sandbox.close())  # reaps it and deletes its directory
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        else:
            kept.sandbox.abandon()


_closing: set[asyncio.Task[None]] = set()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def session_id(value: object, param: str) -> str:
    """A request's session id, checked: 1 to 128 letters, digits and `._:-`."""
    if not isinstance(value, str) or not SESSION_ID.match(value):
        raise BadParameter(
            f"{param} must be 1 to 128 letters, digits or . _ : - (got {str(value)[:40]!r})", param
        )
    return value


KEPT = KeptRepls()
