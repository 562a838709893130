"""The `rlm` step's settings, the caps a session checks, and the errors its session raises."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from composite_cli.errors import CompositeError
from composite_cli.sandbox import SandboxLimits

if TYPE_CHECKING:
    from composite_cli.engine.runtime import StepTotals


@dataclass
class Counter:
    """Calls started by a session and its children: one count for the whole RLM tree."""

    calls: int = 0


class RlmLimit(CompositeError):
    """A cap of the RLM step was reached (shown to the REPL code, or ends the session).

    `cap` names it the way a partial answer's `stopped_by` does: "max_calls (400)".
    """

    def __init__(self, cap: str, message: str | None = None):
        self.cap = cap
        super().__init__(message or cap)


class RootWindowFull(RlmLimit):
    """Even the shortest root turn does not fit the root model's window."""


class RlmFallbackError(CompositeError):
    """The fallback program failed for a reason other than a cap (a sub-call's error)."""


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
    # Root turns without code that runs before the fallback program takes over (0: at once,
    # -1: never); and how many chunks that program reads at most.
    fallback_after: int = 2
    fallback_chunks: int = 4
    root_generation: dict[str, Any] = field(default_factory=dict)
    sub_generation: dict[str, Any] = field(default_factory=dict)
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    # A kept REPL (composite_cli/engine/rlm/kept.py): whose it is (None: not kept), the request
    # field that names the session (for errors), and how long it waits for the next turn.
    session_key: tuple[str, str, str, str] | None = None
    session_param: str = "session"
    session_idle_s: float = 600.0


class Caps:
    """The caps of one session: the tree's deadline and call count (shared with its children),
    and the cost budget of the session's own subtree."""

    def __init__(self, settings: RlmSettings, started: float, counter: Counter, totals: StepTotals):
        self.s = settings
        self.started = started
        self.counter = counter
        self.totals = totals

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it passed)."""
        return self.s.deadline_s - (time.perf_counter() - self.started)

    def reached(self, reserve_root: bool = False) -> str | None:
        """The cap that stops the next call, if any. Sub-calls leave one call for the root's answer."""
        if self.remaining() <= 0:
            return f"deadline ({self.s.deadline_s:g}s)"
        if self.counter.calls >= self.s.max_calls - (1 if reserve_root else 0):
            return f"max_calls ({self.s.max_calls})"
        cost = self.totals.cost_usd
        if (
            self.s.budget_usd is not None
            and cost is not None
            and self.totals.calls
            and cost >= self.s.budget_usd
        ):
            return f"budget_usd (${self.s.budget_usd:g}, spent ${cost:.4f})"
        return None
