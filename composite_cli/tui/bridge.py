"""Engine events → Textual messages.

The engine calls its subscribers synchronously on its event loop (the app's loop, since runs go
in async workers). The bridge posts each structural event (steps, calls, run start and end) as
one `EngineEvent`, and buffers streamed text: deltas are merged and posted as one `TextBatch` at
most once per `interval` (20 times a second by default), whatever the token rate or the number of
experts streaming at once.

Streamed text comes from `TokenDelta` (the final step's answer) and, for the experts, from
`CallDelta`, which the engine emits for every call when the request sets `stream_all`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual.message_pump import MessagePump

from composite_cli.events import CallDelta, TokenDelta
from composite_cli.tui.worker_messages import EngineEvent, TextBatch


def call_delta(event: Any) -> tuple[str, str] | None:
    """(call id, text) when `event` streams a call's text, else None."""
    if isinstance(event, CallDelta):
        return event.call_id, event.text
    return None


class EventBridge:
    """A subscriber that turns engine events into messages for `target`."""

    def __init__(self, target: MessagePump, clock: Callable[[], float], interval: float = 0.05):
        self.target = target
        self.clock = clock
        self.interval = interval
        self.batches = 0  # TextBatch messages posted (tests check the merging)
        self.deltas = 0  # deltas received
        self._calls: dict[str, list[str]] = {}
        self._counts: dict[str, int] = {}
        self._answer: list[str] = []
        self._answer_step: str | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._last = float("-inf")

    def __call__(self, event: Any) -> None:
        if isinstance(event, TokenDelta):
            self._answer.append(event.text)
            self._answer_step = event.step_id or self._answer_step
            self._pending()
            return
        delta = call_delta(event)
        if delta is not None:
            self._calls.setdefault(delta[0], []).append(delta[1])
            self._counts[delta[0]] = self._counts.get(delta[0], 0) + 1
            self._pending()
            return
        self.flush()  # text that came before this event is shown before it
        self.target.post_message(EngineEvent(event, self.clock()))

    def _pending(self) -> None:
        self.deltas += 1
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called off a loop: nothing to schedule on, post now
            self.flush()
            return
        wait = max(0.0, self._last + self.interval - time.monotonic())
        self._handle = loop.call_later(wait, self.flush)

    def flush(self) -> None:
        """Post what is buffered now (also called when the run ends)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._calls and not self._answer:
            return
        batch = TextBatch(
            calls={key: "".join(parts) for key, parts in self._calls.items()},
            counts=dict(self._counts),
            answer="".join(self._answer),
            answer_step=self._answer_step,
            at=self.clock(),
        )
        self._calls.clear()
        self._counts.clear()
        self._answer.clear()
        self._last = time.monotonic()
        self.batches += 1
        self.target.post_message(batch)
