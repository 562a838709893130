"""Turn engine events into rows in the trace store (runs, steps, model calls)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from composite_cli.events import (
    CallFinished,
    CallStarted,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from composite_cli.redact import redact_text, sanitize_params
from composite_cli.traces.store import TraceStore

_RUN_STATS = {"rlm_iterations", "rlm_depth", "rlm_sub_calls"}


def iso(ts: float) -> str:
    """Epoch seconds → ISO 8601 UTC with milliseconds (sorts as text; Datasette-friendly)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# Every step keeps its own copy of the messages: huge texts are clipped in the trace (the
# model still got them whole), so a 10 MB input does not become 10 MB per step on disk.
CLIP_CHARS = 65_536


def clip(text: str | None, limit: int = CLIP_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}[... {len(text) - limit:,} more characters not stored]"


def _clip_messages(request: dict[str, Any]) -> dict[str, Any]:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return request
    clipped = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str) and len(content) > CLIP_CHARS:
            message = {**message, "content": clip(content)}
        clipped.append(message)
    return {**request, "messages": clipped}


class TraceRecorder:
    """An event subscriber that writes one run row, a step row per step and one per call."""

    def __init__(self, store: TraceStore, *, content: bool = True):
        self.store = store
        self.content = content
        self._run_start: dict[str, float] = {}
        self._seq: dict[str, int] = {}
        self._depth: dict[str, int] = {}

    def _next_seq(self, run_id: str) -> int:
        self._seq[run_id] = self._seq.get(run_id, 0) + 1
        return self._seq[run_id]

    def _offset(self, run_id: str, ts: float) -> float:
        return round((ts - self._run_start.get(run_id, ts)) * 1000, 3)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_start[event.run_id] = event.started_at
            self.store.begin_run(
                {
                    "id": event.run_id,
                    "created_at": iso(event.started_at),
                    "mode": event.mode,
                    "source": event.source,
                    "user": event.user,
                    "profile": event.profile,
                    "status": "running",
                    "input": clip(event.input) if self.content else None,
                    "params_json": _json(sanitize_params(event.params)) if event.params else None,
                    "pid": os.getpid(),
                    "calls": 0,
                },
            )
        elif isinstance(event, StepStarted):
            self._depth[event.step_id] = event.depth
            self.store.start_step(
                {
                    "id": event.step_id,
                    "run_id": event.run_id,
                    "parent_id": event.parent_id,
                    "seq": self._next_seq(event.run_id),
                    "depth": event.depth,
                    "kind": event.kind,
                    "name": event.name,
                    "alias": event.alias,
                    "model": event.model,
                    "status": "running",
                    "started_at": iso(event.started_at),
                    "offset_ms": self._offset(event.run_id, event.started_at),
                    "request_json": _json(event.detail) if event.detail and self.content else None,
                },
            )
        elif isinstance(event, StepFinished):
            fields: dict[str, Any] = {
                "status": event.status,
                "latency_ms": round(event.latency_ms, 3),
                "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "cost_usd": event.cost_usd,
            }
            if event.error:
                fields["error"] = redact_text(event.error)
            if self.content:
                fields["output"] = clip(event.output)
                fields["scratchpad"] = clip(event.scratchpad)
            self.store.finish_step(event.step_id, fields)
        elif isinstance(event, CallStarted):
            pass  # the call's row is written whole when it finishes
        elif isinstance(event, CallFinished):
            self._record_call(event)
        elif isinstance(event, RunFinished):
            self.store.finish_run(
                event.run_id,
                {
                    "status": event.status,
                    "finished_at": iso(time.time()),
                    "output": clip(event.output) if self.content else None,
                    "finish_reason": event.finish_reason,
                    "calls": event.calls,
                    "prompt_tokens": event.prompt_tokens,
                    "completion_tokens": event.completion_tokens,
                    "cost_usd": event.cost_usd,
                    "latency_ms": round(event.latency_ms, 3),
                    "error": redact_text(event.error) if event.error else event.error,
                    "stopped_by": event.stopped_by,
                    "notes_json": _json(event.notes) if event.notes else None,
                    **{k: v for k, v in event.stats.items() if k in _RUN_STATS},
                },
            )
            self._run_start.pop(event.run_id, None)
            self._seq.pop(event.run_id, None)

    def _record_call(self, event: CallFinished) -> None:
        rec = event.record
        depth = self._depth.get(rec.parent_id or "", -1) + 1
        request = _clip_messages(rec.request) if self.content else {"params": rec.request.get("params")}
        params = request.get("params")
        if isinstance(params, dict):
            # calls.py masks them already; this is the last door before the disk
            request = {**request, "params": sanitize_params(params)}
        response = rec.response
        if response is not None and not self.content:
            response = {k: v for k, v in response.items() if k != "message"}
        self.store.record_call(
            {
                "id": rec.id,
                "run_id": rec.run_id,
                "parent_id": rec.parent_id,
                "seq": self._next_seq(rec.run_id),
                "depth": depth,
                "kind": "llm",
                "name": rec.name,
                "alias": rec.alias,
                "model": rec.model,
                "status": rec.status,
                "started_at": iso(rec.started_at),
                "offset_ms": self._offset(rec.run_id, rec.started_at),
                "latency_ms": round(rec.latency_ms or 0.0, 3),
                "prompt_tokens": rec.prompt_tokens,
                "completion_tokens": rec.completion_tokens,
                "cost_usd": rec.cost_usd,
                "retries": rec.retries,
                "request_json": _json(request),
                "response_json": _json(response) if response is not None else None,
                "output": clip(rec.text) if self.content else None,
                "error": redact_text(rec.error) if rec.error else rec.error,
                "cached": 1 if rec.cached else None,
            },
        )
