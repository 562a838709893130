"""Events the engine emits while a mode runs. Subscribers (trace recorder, CLI progress, TUI)
receive them in order, on the engine's event loop; they must be quick and must not block.

Events are frozen and keyword-only: what a subscriber got cannot change after it was emitted, and
a construction site names every field. A finished model call travels as its `CallRecord` (defined
here, built by calls.complete()), copied into the CallFinished event when it finished: the engine
may go on from its own record (e.g. a copy without tool calls a step may not make, or a
conversation that grows from the call's messages); no subscriber sees that."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Literal, get_args

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
class CallRecord:
    """Everything the trace keeps about one model call (calls.complete() builds it once per way
    out: ok, cached, error or cancelled; a call in flight is one with status "running")."""

    id: str
    run_id: str
    parent_id: str | None
    name: str
    alias: str
    model: str
    started_at: float
    request: dict[str, Any]
    status: str = "running"  # running | ok | error | cancelled
    latency_ms: float | None = None
    response: dict[str, Any] | None = None
    message: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    retries: int = 0
    # HTTP requests made for this call: retries of the step and of the HTTP layer, and fallbacks.
    attempts: int = 1
    error: str | None = None  # the one-line description of what failed
    cached: bool = False
    # Models of the alias that failed before the one that answered: [{"model", "error"}].
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    # Why the answer was cut short by composite or the provider rather than ended by the model:
    # "repetition" (it looped; finish_reason "length"). Kept in the trace as `response.stopped`.
    stopped: str | None = None
    # What the provider did on the model's behalf, if it says (`provider_specific_fields.note`),
    # e.g. the embedded model answering instead of repeating a tool call. Kept as `response.note`.
    note: str | None = None

    @property
    def text(self) -> str:
        content = self.message.get("content")
        return content if isinstance(content, str) else ""


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
    """A model call ended. `record` is the event's own copy: its containers (request, message,
    response, fallbacks) are copied when the event is made, so later edits of the lists the call
    was given, or of the record's dicts, never show to a subscriber."""

    record: CallRecord

    def __post_init__(self) -> None:
        copy = replace(
            self.record, **{f.name: _copied(getattr(self.record, f.name)) for f in fields(CallRecord)}
        )
        object.__setattr__(self, "record", copy)


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
