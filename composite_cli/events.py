"""Events the engine emits while a mode runs. Subscribers (trace recorder, CLI progress, TUI)
receive them in order, on the engine's event loop; they must be quick and must not block."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composite_cli.calls import CallRecord


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    mode: str
    source: str
    profile: str
    input: str
    started_at: float
    user: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    content: bool = True


@dataclass(frozen=True)
class StepStarted:
    run_id: str
    step_id: str
    parent_id: str | None
    kind: str
    name: str
    started_at: float
    depth: int
    alias: str | None = None
    model: str | None = None
    detail: dict[str, Any] | None = None  # e.g. a tool call's arguments


@dataclass(frozen=True)
class StepFinished:
    run_id: str
    step_id: str
    status: str  # ok | error | skipped | cancelled | partial
    latency_ms: float
    output: str | None = None
    error: str | None = None
    scratchpad: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True)
class CallStarted:
    run_id: str
    call_id: str
    parent_id: str | None
    name: str
    alias: str
    model: str
    started_at: float


@dataclass(frozen=True)
class CallFinished:
    record: CallRecord


@dataclass(frozen=True)
class CallDelta:
    """Text of any model call as it streams (only when the request set `stream_all`)."""

    run_id: str
    call_id: str
    text: str


@dataclass(frozen=True)
class TokenDelta:
    """Text of the final step as it streams (what the caller sees)."""

    run_id: str
    step_id: str | None
    text: str


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    status: str  # ok | error | partial | cancelled
    latency_ms: float
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    output: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    # A partial run: the cap that stopped it ("max_iterations (8)"), when the step named one.
    stopped_by: str | None = None
    # Facts from the final value for the response metadata (e.g. {"rlm": {"path": "fallback"}}).
    notes: dict[str, Any] = field(default_factory=dict)


Event = (
    RunStarted
    | StepStarted
    | StepFinished
    | CallStarted
    | CallDelta
    | CallFinished
    | TokenDelta
    | RunFinished
)
Subscriber = Callable[[Event], None]
