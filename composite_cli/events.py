"""Events the engine emits while a mode runs. Subscribers (trace recorder, CLI progress, TUI)
receive them in order, on the engine's event loop; they must be quick and must not block.

Events are frozen and keyword-only: what a subscriber got cannot change after it was emitted, and
a construction site names every field. A finished model call travels as a `CallSummary`, a frozen
copy of the call's record taken when it finished (the engine may still edit its own record, e.g.
drop tool calls a step may not make; no subscriber sees that)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

if TYPE_CHECKING:
    from composite_cli.calls import CallRecord

# How a step ended: the one vocabulary of StepFinished.status (engine/lifecycle.py maps every
# way out of a step to one of these). "skipped": the step did not run (e.g. a tool call the step
# may not make; `error` says why). "timeout": the step's own time limit passed.
StepStatus = Literal["ok", "partial", "error", "timeout", "cancelled", "skipped"]
STEP_STATUSES: Final[tuple[StepStatus, ...]] = get_args(StepStatus)
# The statuses of a step that failed (every view that counts or colours failed steps uses these).
FAILED_STEP_STATUSES: Final[tuple[StepStatus, ...]] = ("error", "timeout")

# How a run ended: RunFinished.status ("cancelled" also when the caller's timeout cut it).
RunStatus = Literal["ok", "partial", "error", "cancelled"]
RUN_STATUSES: Final[tuple[RunStatus, ...]] = get_args(RunStatus)


@dataclass(frozen=True, kw_only=True, slots=True)
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


@dataclass(frozen=True, kw_only=True, slots=True)
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


@dataclass(frozen=True, kw_only=True, slots=True)
class StepFinished:
    run_id: str
    step_id: str
    status: StepStatus
    latency_ms: float
    output: str | None = None
    error: str | None = None
    scratchpad: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CallStarted:
    run_id: str
    call_id: str
    parent_id: str | None
    name: str
    alias: str
    model: str
    started_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class CallSummary:
    """One finished model call as subscribers see it: the fields of calls.CallRecord (without the
    exception object: `error` holds its one-line description), copied when the call finished."""

    id: str
    run_id: str
    parent_id: str | None
    name: str
    alias: str
    model: str
    started_at: float
    request: dict[str, Any]
    status: str  # ok | error | cancelled
    latency_ms: float | None = None
    response: dict[str, Any] | None = None
    message: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    retries: int = 0
    attempts: int = 1
    error: str | None = None
    cached: bool = False
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None
    note: str | None = None

    @property
    def text(self) -> str:
        content = self.message.get("content")
        return content if isinstance(content, str) else ""

    @classmethod
    def of(cls, record: CallRecord) -> CallSummary:
        """A frozen copy of `record`: its containers are copied, so later edits of the record
        (or of its request and message) never show here."""
        return cls(**{f.name: _copied(getattr(record, f.name)) for f in fields(cls)})


def _copied(value: Any) -> Any:
    """`value` with its dicts and lists copied, all the way down (anything else is shared: text and
    numbers cannot change, and an object a caller passed as a parameter need not be copyable)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class CallFinished:
    record: CallSummary


@dataclass(frozen=True, kw_only=True, slots=True)
class CallDelta:
    """Text of any model call as it streams (only when the request set `stream_all`)."""

    run_id: str
    call_id: str
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenDelta:
    """Text of the final step as it streams (what the caller sees)."""

    run_id: str
    step_id: str | None
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RunFinished:
    run_id: str
    status: RunStatus
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
