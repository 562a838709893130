"""Scripted runs: a fixed sequence of engine events, with fixed times, played to the app's
subscribers (and to the trace recorder, so the trace DB gets the same run). The snapshot tests
and the README screenshots use them to show a fan-out mid-run that looks the same every time.

`Gate(name)` pauses the script until `ScriptedRun.release(name)`; `FakeClock` follows the script's
times, so elapsed times and timeline bars are deterministic too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composite_cli.config import Profile, Settings
from composite_cli.engine.runtime import RunRequest, RunResult
from composite_cli.engine.spec import ModeSpec
from composite_cli.events import (
    CallDelta,
    CallFinished,
    CallRecord,
    CallStarted,
    Event,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStarted,
    Subscriber,
    TokenDelta,
)
from composite_cli.runner import Runner
from composite_cli.tui.services import FakeClock, TuiServices

EXPERTS = (
    "analyst",
    "teacher",
    "skeptic",
    "historian",
    "coach",
    "critic",
    "editor",
    "tactician",
    "student",
    "author",
    "engine",
    "trainer",
    "arbiter",
    "master",
    "scout",
    "writer",
)
ANSWERS = (
    "The Ruy Lopez, the Italian Game and the Queen's Gambit.",
    "Start with 1.e4 e5 2.Nf3 Nc6 3.Bb5: the Ruy Lopez; then the Italian Game and the Queen's Gambit.",
    "People often name the Sicilian, but the classical trio is Ruy Lopez, Italian Game, Queen's Gambit.",
    "Since the 16th century: the Ruy Lopez (Spanish), the Giuoco Piano (Italian) and the Queen's Gambit.",
)
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass
class Emit:
    at: float  # seconds after the script's start
    event: Event | Any


@dataclass
class Gate:
    name: str
    at: float | None = None  # the clock shows this time while the script waits here


@dataclass
class ScriptedRun:
    """Events to play, the result to return, and gates a test can hold shut."""

    entries: list[Emit | Gate]
    result: RunResult
    start: float = T0
    pace: float = 0.0  # real seconds between events (0: as fast as the loop goes)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    reached: set[str] = field(default_factory=set)  # gates the script has stopped at

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        self.gate(name).set()

    async def play(self, subscribers: Sequence[Subscriber], clock: FakeClock | None) -> RunResult:
        for entry in self.entries:
            if isinstance(entry, Gate):
                if clock is not None and entry.at is not None:
                    clock.set(self.start + entry.at)
                self.reached.add(entry.name)
                await self.gate(entry.name).wait()
                continue
            if clock is not None:
                clock.set(self.start + entry.at)
            for subscriber in subscribers:
                subscriber(entry.event)
            await asyncio.sleep(self.pace)
        return self.result


class ScriptedRunner(Runner):
    """A Runner whose runs replay scripts (one per run, in order; the last one repeats)."""

    def __init__(self, settings: Settings, scripts: Iterable[ScriptedRun], *, clock: FakeClock | None = None):
        super().__init__(settings)
        self.scripts = list(scripts)
        self.clock = clock
        self.requests: list[RunRequest] = []

    async def run(
        self,
        mode: str | ModeSpec,
        request: RunRequest,
        *,
        profile: Profile | None = None,
        subscribers: Iterable[Subscriber] = (),
        run_id: str | None = None,
        cache: bool = False,
        timeout: float | None = None,
    ) -> RunResult:
        self.requests.append(request)
        script = self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]
        return await script.play(self.open_subscribers(subscribers), self.clock)


def _record(
    run_id: str,
    call_id: str,
    parent: str,
    name: str,
    model: str,
    start: float,
    seconds: float,
    text: str,
    prompt_tokens: int,
    cost: float | None,
    status: str = "ok",
) -> CallRecord:
    completion = max(1, len(text.split()) * 4 // 3)
    return CallRecord(
        id=call_id,
        run_id=run_id,
        parent_id=parent,
        name=name,
        alias="strong" if name == "answer" else "fast",
        model=model,
        started_at=start,
        request={
            "messages": [{"role": "user", "content": "Name three classical chess openings."}],
            "params": {"max_tokens": 256},
        },
        status=status,
        latency_ms=seconds * 1000,
        response={
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion},
        },
        message={"role": "assistant", "content": text},
        finish_reason="stop",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        cost_usd=cost,
        error=None if status == "ok" else "RateLimitError: demo provider is busy",
    )


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def fanout_script(
    experts: int = 4,
    *,
    prompt: str = "Name three classical chess openings.",
    run_id: str = "demo-run-0001",
    gate_at: float | None = None,
    failing: int | None = None,
    model: str = "demo/fast-model",
    final_model: str = "demo/strong-model",
    stopped_by: str | None = None,
) -> ScriptedRun:
    """A mixture-of-agents run: `experts` proposers streaming in parallel, then an aggregator.

    With `gate_at`, the script stops at that time (seconds) until `release("mid")`. Expert number
    `failing` (if any) ends with a provider error. With `stopped_by`, the aggregator's answer is
    partial: that cap stopped the run."""
    status: RunStatus = "partial" if stopped_by else "ok"
    reason = "length" if stopped_by else "stop"
    names = [EXPERTS[i % len(EXPERTS)] + ("" if i < len(EXPERTS) else str(i)) for i in range(experts)]
    timed: list[tuple[float, Any]] = []
    fan = f"{run_id}-fanout"
    timed.append(
        (
            0.0,
            RunStarted(
                run_id=run_id, mode="moa-v1", source="tui", profile="demo", input=prompt, started_at=T0
            ),
        )
    )
    timed.append(
        (
            0.002,
            StepStarted(
                run_id=run_id,
                step_id=fan,
                parent_id=None,
                kind="fanout",
                name="proposals",
                started_at=T0 + 0.002,
                depth=0,
                alias="fast",
                model=model,
            ),
        )
    )
    ends = []
    for i, name in enumerate(names):
        call = f"{run_id}-e{i:02d}"
        start = 0.004 + 0.003 * i
        seconds = 0.9 + 0.35 * (i % 4) + 0.12 * (i % 3)
        text = ANSWERS[i % len(ANSWERS)]
        timed.append(
            (
                start,
                CallStarted(
                    run_id=run_id,
                    call_id=call,
                    parent_id=fan,
                    name=name,
                    alias="fast",
                    model=model,
                    started_at=T0 + start,
                ),
            )
        )
        chunks = _words(text)
        ok = i != failing
        shown = chunks if ok else chunks[: len(chunks) // 3]
        for k, chunk in enumerate(shown):
            timed.append(
                (
                    start + 0.05 + (seconds - 0.1) * k / len(chunks),
                    CallDelta(run_id=run_id, call_id=call, text=chunk),
                )
            )
        record = _record(
            run_id,
            call,
            fan,
            name,
            model,
            T0 + start,
            seconds,
            text if ok else "",
            40 + 3 * i,
            0.000012 + 0.000001 * i,
            "ok" if ok else "error",
        )
        timed.append((start + seconds, CallFinished(record=record)))
        ends.append(start + seconds)
    fan_end = max(ends)
    timed.append(
        (
            fan_end + 0.001,
            StepFinished(
                run_id=run_id,
                step_id=fan,
                status="ok",
                latency_ms=(fan_end - 0.002) * 1000,
                output="(candidates)",
            ),
        )
    )
    final = "The three classical openings are the Ruy Lopez, the Italian Game and the Queen's Gambit."
    step, call, start = f"{run_id}-answer", f"{run_id}-a", fan_end + 0.01
    timed.append(
        (
            start,
            StepStarted(
                run_id=run_id,
                step_id=step,
                parent_id=None,
                kind="synthesize",
                name="answer",
                started_at=T0 + start,
                depth=0,
                alias="strong",
                model=final_model,
            ),
        )
    )
    timed.append(
        (
            start + 0.001,
            CallStarted(
                run_id=run_id,
                call_id=call,
                parent_id=step,
                name="answer",
                alias="strong",
                model=final_model,
                started_at=T0 + start,
            ),
        )
    )
    chunks = _words(final)
    for k, chunk in enumerate(chunks):
        timed.append((start + 0.1 + 0.04 * k, TokenDelta(run_id=run_id, step_id=step, text=chunk)))
    seconds = 0.15 + 0.04 * len(chunks)
    record = _record(
        run_id, call, step, "answer", final_model, T0 + start, seconds, final, 180 + 30 * experts, 0.00021
    )
    timed.append((start + seconds, CallFinished(record=record)))
    end = start + seconds + 0.002
    timed.append(
        (
            end - 0.001,
            StepFinished(run_id=run_id, step_id=step, status=status, latency_ms=seconds * 1000, output=final),
        )
    )
    calls = experts + 1
    prompt_tokens = sum(r.prompt_tokens for _, e in timed if isinstance(e, CallFinished) for r in [e.record])
    completion = sum(r.completion_tokens for _, e in timed if isinstance(e, CallFinished) for r in [e.record])
    cost = sum(
        r.cost_usd or 0
        for _, e in timed
        if isinstance(e, CallFinished)
        for r in [e.record]
        if r.status == "ok"
    )
    timed.append(
        (
            end,
            RunFinished(
                run_id=run_id,
                status=status,
                latency_ms=end * 1000,
                calls=calls,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion,
                cost_usd=cost,
                output=final,
                finish_reason=reason,
                stopped_by=stopped_by,
            ),
        )
    )
    timed.sort(key=lambda pair: pair[0])
    entries: list[Emit | Gate] = []
    for at, event in timed:
        if gate_at is not None and at > gate_at and not any(isinstance(e, Gate) for e in entries):
            entries.append(Gate("mid", gate_at))
        entries.append(Emit(at, event))
    result = RunResult(
        run_id,
        "moa-v1",
        "demo",
        {"role": "assistant", "content": final},
        reason,
        calls,
        prompt_tokens,
        completion,
        cost,
        end * 1000,
        status=status,
        stopped_by=stopped_by,
    )
    return ScriptedRun(entries, result)


def demo_settings(db: Path, *, modes_path: Sequence[Path] = (), profile: Profile | None = None) -> Settings:
    """Settings for tests and screenshots: every alias on one fake model, the DB at `db`."""
    return Settings(
        profile=profile or Profile("demo", {"*": {"model": "openai/fake-model"}}),
        db_path=db,
        modes_path=tuple(modes_path),
    )


def demo_services(runner: Runner, clock: FakeClock, **options: Any) -> TuiServices:
    """Services for a deterministic app: a fake clock, no blink, no animation, no polling."""
    values: dict[str, Any] = {
        "poll_interval": 3600.0,
        "blink": False,
        "animations": False,
        "warm_up": False,
        "mode": "moa-v1",
    }
    values.update(options)
    return TuiServices(runner, clock=clock, **values)
