"""The `rlm` step's settings and the errors its session raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from composite_cli.errors import CompositeError
from composite_cli.sandbox import SandboxLimits


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
