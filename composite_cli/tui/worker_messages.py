"""Messages the TUI's workers post to its screens. Small dataclasses; the high-frequency ones
merge (`can_replace`) or are batched by the bridge so a fast stream never floods the queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from composite_cli.events import Event


@dataclass
class EngineEvent(Message):
    """One engine event (not a text delta), stamped with the app clock when it happened."""

    event: Event
    at: float


@dataclass
class TextBatch(Message):
    """Streamed text merged over one interval: call id → new text, and the answer's new text."""

    calls: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # deltas per call (≈ tokens so far)
    answer: str = ""
    answer_step: str | None = None
    at: float = 0.0


@dataclass
class RunEnded(Message):
    """The worker finished: `result` on success, `error` (one line) on failure, or cancelled."""

    result: Any = None
    error: str | None = None
    cancelled: bool = False


@dataclass
class DbChanged(Message):
    """The trace database changed (any process). Pending ones merge into the newest."""

    version: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DbChanged)


@dataclass
class EvalProgressed(Message):
    """Per-mode eval progress (done, total, errors, partial, running score); the newest replaces
    older ones."""

    rows: list[tuple[str, int, int, int, int, float | None]]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EvalProgressed)


@dataclass
class EvalEnded(Message):
    eval_run_id: str | None
    status: str
    error: str | None = None
