"""Run-time state: the run context (limits, totals, events) and the scope of step values."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from composite_cli.config import Profile
from composite_cli.errors import RunLimitExceeded
from composite_cli.events import CallDelta, CallFinished, CallRecord, CallStarted, Event, Subscriber


@dataclass
class RunRequest:
    """One request to run a mode: the conversation and the caller's options."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    # The caller's sampling options (temperature, max_tokens, ...): applied to the final step.
    generation: dict[str, Any] = field(default_factory=dict)
    # Overrides of the mode's declared parameters, for this request only.
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "python"
    user: str | None = None
    stream: bool = False
    # Part of every cache key of this run (e.g. an eval's repeat number), so repeats differ.
    cache_salt: str = ""
    # Also stream every internal call's text, as CallDelta events (for live views like the TUI).
    stream_all: bool = False


@dataclass
class RunResult:
    """What a finished run returns to its caller."""

    run_id: str
    mode: str
    profile: str
    message: dict[str, Any]
    finish_reason: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms: float
    status: str = "ok"
    cached_calls: int = 0
    # Set when status is "partial": the cap that stopped the run ("max_iterations (8)").
    stopped_by: str | None = None
    # Facts for the response metadata from the final value (e.g. {"rlm": {"path": "fallback"}}).
    notes: dict[str, Any] = field(default_factory=dict)
    # The models LiteLLM has no price for, whose calls made cost_usd unknown (None).
    unpriced_models: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        content = self.message.get("content")
        return content if isinstance(content, str) else ""


class Scope:
    """Step values visible to templates: a chain of dicts (loop bodies get a child scope)."""

    def __init__(self, values: Mapping[str, Any] | None = None, parent: Scope | None = None):
        self.values: dict[str, Any] = dict(values or {})
        self.parent = parent

    def child(self, **values: Any) -> Scope:
        return Scope(values, self)

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value

    def update(self, name: str, value: Any) -> None:
        """Rebind `name` where it was defined (used by a step's `updates:`)."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                scope.values[name] = value
                return
            scope = scope.parent
        self.values[name] = value

    def get(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            scope = scope.parent
        raise KeyError(name)

    def flat(self) -> dict[str, Any]:
        chain = []
        scope: Scope | None = self
        while scope is not None:
            chain.append(scope.values)
            scope = scope.parent
        merged: dict[str, Any] = {}
        for values in reversed(chain):
            merged.update(values)
        return merged


class StepTotals:
    """Tokens and cost of one step's subtree (summed as calls finish)."""

    def __init__(self, parent: StepTotals | None = None):
        self.parent = parent
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd: float | None = 0.0
        self.calls = 0
        self.unpriced_models: list[str] = []  # what made cost_usd unknown, in order of first call

    def add(self, record: CallRecord) -> None:
        node: StepTotals | None = self
        while node is not None:
            node.calls += 1
            node.prompt_tokens += record.prompt_tokens
            node.completion_tokens += record.completion_tokens
            if record.status == "ok":
                node.cost_usd = (
                    None
                    if node.cost_usd is None or record.cost_usd is None
                    else node.cost_usd + record.cost_usd
                )
                if record.cost_usd is None and record.model not in node.unpriced_models:
                    node.unpriced_models.append(record.model)
            node = node.parent


class RunContext:
    """Per-run state shared by all steps. Implements the `CallHost` protocol for `calls`."""

    def __init__(
        self,
        *,
        run_id: str,
        mode: str,
        profile: Profile,
        request: RunRequest,
        params: dict[str, Any],
        max_calls: int,
        deadline_s: float,
        subscribers: list[Subscriber],
    ):
        self.run_id = run_id
        self.mode = mode
        self.profile = profile
        self.request = request
        self.params = params
        self.max_calls = max_calls
        self.started = time.perf_counter()
        self.deadline_s = deadline_s
        self.deadline = self.started + deadline_s
        self.subscribers = subscribers
        self.calls = 0
        self.totals = StepTotals()
        self.step_totals: dict[str, StepTotals] = {}
        self.final_streamed = False
        # Counters a step may add to the run's record (e.g. rlm_iterations, rlm_depth).
        self.stats: dict[str, int] = {}
        self.cache: Any = None  # a CallCache when identical requests may be replayed
        self.cached_calls = 0
        self.cache_salt = ""

    def emit(self, event: Event) -> None:
        for subscriber in self.subscribers:
            subscriber(event)

    # -- CallHost ---------------------------------------------------------------------------
    def reserve_call(self) -> None:
        if self.calls >= self.max_calls:
            raise RunLimitExceeded(
                "max_calls", f"run reached max_calls ({self.max_calls}) in mode {self.mode!r}"
            )
        if self.remaining_time() == 0:
            raise self.deadline_error()
        self.calls += 1

    def deadline_error(self) -> RunLimitExceeded:
        """The error of a run past its deadline (one wording, whichever check saw it)."""
        return RunLimitExceeded(
            "deadline", f"run passed its deadline of {self.deadline_s:g}s in mode {self.mode!r}"
        )

    def remaining_time(self) -> float | None:
        return max(0.0, self.deadline - time.perf_counter())

    def call_metadata(self) -> dict[str, Any]:
        return {"composite_run_id": self.run_id, "composite_mode": self.mode}

    def call_started(self, record: CallRecord) -> None:
        self.emit(
            CallStarted(
                run_id=self.run_id,
                call_id=record.id,
                parent_id=record.parent_id,
                name=record.name,
                alias=record.alias,
                model=record.model,
                started_at=record.started_at,
            )
        )

    def call_delta(self, call_id: str, text: str) -> None:
        self.emit(CallDelta(run_id=self.run_id, call_id=call_id, text=text))

    def record_call(self, record: CallRecord) -> None:
        if record.cached:
            self.cached_calls += 1
        parent = self.step_totals.get(record.parent_id or "", self.totals)
        parent.add(record)
        self.emit(CallFinished(record=record))
