"""What a live run looks like: its steps and calls as they start and finish, the streamed text,
and the totals. Plain Python (no widgets), fed by the Run screen from engine events; times are
the app clock's, stamped when each event happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from composite_cli.events import (
    CallFinished,
    CallStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from composite_cli.tui.worker_messages import TextBatch


@dataclass
class LiveItem:
    """One step or one model call of the running mode."""

    id: str
    parent_id: str | None
    kind: str  # a step kind, or "llm" for a model call
    name: str
    depth: int
    started: float
    model: str | None = None
    ended: float | None = None
    status: str = "running"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    text: str = ""
    chunks: int = 0  # streamed deltas so far (≈ tokens while the call runs)
    error: str | None = None

    @property
    def is_call(self) -> bool:
        return self.kind == "llm"

    def elapsed(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started

    def tokens_so_far(self) -> str:
        """Completion tokens when known, `~N` from streamed deltas while running."""
        if self.completion_tokens or self.status != "running":
            return str(self.completion_tokens)
        return f"~{self.chunks}" if self.chunks else "0"


@dataclass
class Span:
    """A bar of the timeline: seconds from the start of the run."""

    key: str
    label: str
    depth: int
    start: float
    end: float
    status: str
    is_call: bool


@dataclass
class RunState:
    run_id: str | None = None
    mode: str = ""
    profile: str = ""
    started: float | None = None
    ended: float | None = None
    status: str = "idle"  # idle | running | ok | error | partial | cancelled
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # the known part: the sum of the priced calls
    unpriced: int = 0  # answered calls without a price (shown as "n unpriced", never as $0)
    error: str | None = None
    stopped_by: str | None = None  # a partial run: the cap that stopped it
    answer: str = ""
    items: dict[str, LiveItem] = field(default_factory=dict)  # in start order

    def apply(self, event: Any, at: float) -> None:
        """Apply one engine event that happened at `at` (app clock). One state per run."""
        if isinstance(event, RunStarted):
            self.run_id, self.mode, self.profile = event.run_id, event.mode, event.profile
            self.started, self.status, self.cost_usd = at, "running", 0.0
        elif isinstance(event, StepStarted):
            self.items[event.step_id] = LiveItem(
                event.step_id, event.parent_id, event.kind, event.name, event.depth, at, event.model
            )
        elif isinstance(event, StepFinished):
            item = self.items.get(event.step_id)
            if item is not None:
                item.ended, item.status, item.error = at, event.status, event.error
                item.prompt_tokens, item.completion_tokens = event.prompt_tokens, event.completion_tokens
                item.cost_usd = event.cost_usd
                if not item.text and event.output and event.status in ("ok", "partial"):
                    item.text = event.output
        elif isinstance(event, CallStarted):
            parent = self.items.get(event.parent_id or "")
            depth = parent.depth + 1 if parent is not None else 0
            self.items[event.call_id] = LiveItem(
                event.call_id, event.parent_id, "llm", event.name, depth, at, event.model
            )
        elif isinstance(event, CallFinished):
            self._call_finished(event, at)
        elif isinstance(event, RunFinished):
            self.ended, self.status, self.error = at, event.status, event.error
            self.stopped_by = event.stopped_by
            self.calls = event.calls
            if event.cost_usd is not None:  # else (some call unpriced): the known sum stays
                self.cost_usd = event.cost_usd
            self.prompt_tokens, self.completion_tokens = event.prompt_tokens, event.completion_tokens
            if event.output and not self.answer:
                self.answer = event.output

    def _call_finished(self, event: CallFinished, at: float) -> None:
        rec = event.record
        item = self.items.get(rec.id)
        if item is None:  # no CallStarted seen (should not happen): show it anyway
            item = self.items[rec.id] = LiveItem(rec.id, rec.parent_id, "llm", rec.name, 0, at, rec.model)
        item.ended, item.status, item.error = at, rec.status, rec.error
        item.prompt_tokens, item.completion_tokens, item.cost_usd = (
            rec.prompt_tokens,
            rec.completion_tokens,
            rec.cost_usd,
        )
        calls = rec.message.get("tool_calls") if rec.message else None
        if rec.text:
            item.text = rec.text
        elif calls:
            item.text = "tool calls: " + ", ".join(str((c.get("function") or {}).get("name")) for c in calls)
        self.calls += 1
        self.prompt_tokens += rec.prompt_tokens
        self.completion_tokens += rec.completion_tokens
        if rec.status == "ok":
            if rec.cost_usd is None:
                self.unpriced += 1
            else:
                self.cost_usd = (self.cost_usd or 0.0) + rec.cost_usd

    def apply_text(self, batch: TextBatch) -> None:
        """Append merged streamed text (experts' and the answer's)."""
        for call_id, text in batch.calls.items():
            item = self.items.get(call_id)
            if item is not None:
                item.text += text
                item.chunks += batch.counts.get(call_id, 0)
        if batch.answer:
            self.answer += batch.answer
            call = self._answering_call(batch.answer_step)
            if call is not None and call.id not in batch.calls:
                call.text += batch.answer
                call.chunks += max(1, len(batch.answer.split()))

    def _answering_call(self, step_id: str | None) -> LiveItem | None:
        """The running call of the final step (the one whose tokens are the answer)."""
        for item in reversed(self.items.values()):
            if item.is_call and item.status == "running" and (step_id is None or item.parent_id == step_id):
                return item
        return None

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.ended if self.ended is not None else now) - self.started

    def spans(self, now: float) -> list[Span]:
        """Timeline bars, in start order, relative to the start of the run."""
        if self.started is None:
            return []
        t0 = self.started
        return [
            Span(
                item.id,
                item.name if item.is_call else f"{item.name} ({item.kind})",
                item.depth,
                item.started - t0,
                (item.ended if item.ended is not None else now) - t0,
                item.status,
                item.is_call,
            )
            for item in self.items.values()
        ]

    @property
    def running(self) -> bool:
        return self.status == "running"
