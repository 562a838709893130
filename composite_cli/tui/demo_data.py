"""Fixed trace data for the TUI's tests and screenshots: runs of several modes, statuses and
sources at fixed times (written through the trace recorder, as the engine would), a recursive-LM
run with nested sub-calls, and an eval with results. Same rows every time, so snapshots are
stable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from composite_cli.events import (
    CallFinished,
    CallRecord,
    CallStarted,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStarted,
)
from composite_cli.traces.eval_records import EvalResultRecord, begin_eval, finish_eval, record_eval_result
from composite_cli.traces.recorder import TraceRecorder, iso
from composite_cli.traces.store import TraceStore
from composite_cli.tui.demo import T0, ScriptedRun


@dataclass
class RunSpec:
    run_id: str
    mode: str
    source: str
    ago: float  # seconds before T0
    seconds: float
    model: str = "openai/gpt-4.1-mini"
    status: RunStatus = "ok"
    tokens: tuple[int, int] = (120, 40)
    cost: float | None = 0.00004
    tool: bool = False


def _call(
    run_id: str,
    call_id: str,
    parent: str,
    name: str,
    model: str,
    start: float,
    seconds: float,
    tokens: tuple[int, int],
    cost: float | None,
    status: str = "ok",
    text: str = "42",
) -> CallRecord:
    return CallRecord(
        id=call_id,
        run_id=run_id,
        parent_id=parent,
        name=name,
        alias="strong",
        model=model,
        started_at=start,
        request={
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "What is 6 * 7?"},
            ],
            "params": {"max_tokens": 64},
        },
        status=status,
        latency_ms=seconds * 1000,
        response={
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]},
        }
        if status == "ok"
        else None,
        message={"role": "assistant", "content": text} if status == "ok" else {},
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        cost_usd=cost if status == "ok" else None,
        error=None if status == "ok" else "RateLimitError: litellm.RateLimitError: slow down",
    )


def simple_run(spec: RunSpec) -> list[Any]:
    """Events of a one-call run (plus a think tool call when `spec.tool`)."""
    t = T0 - spec.ago
    rid, step, call = spec.run_id, f"{spec.run_id}-s", f"{spec.run_id}-c"
    ok = spec.status == "ok"
    events: list[Any] = [
        RunStarted(
            run_id=rid,
            mode=spec.mode,
            source=spec.source,
            profile="openai",
            input="What is 6 * 7?",
            started_at=t,
        ),
        StepStarted(
            run_id=rid,
            step_id=step,
            parent_id=None,
            kind="call",
            name="answer",
            started_at=t + 0.001,
            depth=0,
            alias="strong",
            model=spec.model,
        ),
        CallStarted(
            run_id=rid,
            call_id=call,
            parent_id=step,
            name="answer",
            alias="strong",
            model=spec.model,
            started_at=t + 0.002,
        ),
    ]
    if spec.tool:
        think = f"{rid}-t"
        events.append(
            StepStarted(
                run_id=rid,
                step_id=think,
                parent_id=step,
                kind="think",
                name="think",
                started_at=t + 0.003,
                depth=1,
                detail={"arguments": "{}"},
            )
        )
        events.append(
            StepFinished(
                run_id=rid,
                step_id=think,
                status="ok",
                latency_ms=1.0,
                output="noted",
                scratchpad="6 * 7 = 42, answer plainly.",
            )
        )
    events.append(
        CallFinished(
            record=_call(
                rid,
                call,
                step,
                "answer",
                spec.model,
                t + 0.002,
                spec.seconds - 0.004,
                spec.tokens,
                spec.cost,
                spec.status,
            )
        )
    )
    error = None if ok else "RateLimitError: litellm.RateLimitError: slow down"
    events.append(
        StepFinished(
            run_id=rid,
            step_id=step,
            status=spec.status,
            latency_ms=(spec.seconds - 0.002) * 1000,
            output="42" if ok else None,
            error=error,
            scratchpad=None,
            prompt_tokens=spec.tokens[0],
            completion_tokens=spec.tokens[1],
            cost_usd=spec.cost if ok else None,
        )
    )
    events.append(
        RunFinished(
            run_id=rid,
            status=spec.status,
            latency_ms=spec.seconds * 1000,
            calls=1,
            prompt_tokens=spec.tokens[0],
            completion_tokens=spec.tokens[1],
            cost_usd=spec.cost if ok else None,
            output="42" if ok else None,
            finish_reason="stop" if ok else None,
            error=error,
        )
    )
    return events


def rlm_run(run_id: str = "demo-rlm-0001", ago: float = 600.0) -> list[Any]:
    """A recursive-LM run: root turns, a REPL block whose sub-calls run in parallel, one level deeper."""
    t = T0 - ago
    rlm, model, sub = f"{run_id}-rlm", "openai/gpt-4.1", "openai/gpt-4.1-mini"
    events: list[Any] = [
        RunStarted(
            run_id=run_id,
            mode="rlm-v1",
            source="chat",
            profile="openai",
            input="How many ERROR lines are in the log?",
            started_at=t,
        ),
        StepStarted(
            run_id=run_id,
            step_id=rlm,
            parent_id=None,
            kind="rlm",
            name="rlm",
            started_at=t + 0.001,
            depth=0,
            alias="root",
            model=model,
        ),
    ]
    root1 = f"{run_id}-r1"
    events.append(
        CallStarted(
            run_id=run_id,
            call_id=root1,
            parent_id=rlm,
            name="root (iteration 1)",
            alias="root",
            model=model,
            started_at=t + 0.002,
        )
    )
    events.append(
        CallFinished(
            record=_call(
                run_id,
                root1,
                rlm,
                "root (iteration 1)",
                model,
                t + 0.002,
                0.9,
                (900, 120),
                0.0021,
                text="```repl\nparts = split(context)\nprint(llm_query_batched(parts))\n```",
            )
        )
    )
    repl = f"{run_id}-repl1"
    events.append(
        StepStarted(
            run_id=run_id,
            step_id=repl,
            parent_id=rlm,
            kind="repl",
            name="repl 1",
            started_at=t + 0.91,
            depth=1,
        )
    )
    for i in range(3):
        cid = f"{run_id}-sub{i}"
        start = t + 0.92 + 0.01 * i
        events.append(
            CallStarted(
                run_id=run_id,
                call_id=cid,
                parent_id=repl,
                name=f"llm_query {i + 1}",
                alias="sub",
                model=sub,
                started_at=start,
            )
        )
        events.append(
            CallFinished(
                record=_call(
                    run_id,
                    cid,
                    repl,
                    f"llm_query {i + 1}",
                    sub,
                    start,
                    0.5 + 0.2 * i,
                    (700, 8),
                    0.0003,
                    text=str(4 + i),
                )
            )
        )
    events.append(
        StepFinished(run_id=run_id, step_id=repl, status="ok", latency_ms=800.0, output="[4, 5, 6]")
    )
    root2 = f"{run_id}-r2"
    events.append(
        CallStarted(
            run_id=run_id,
            call_id=root2,
            parent_id=rlm,
            name="root (iteration 2)",
            alias="root",
            model=model,
            started_at=t + 1.72,
        )
    )
    events.append(
        CallFinished(
            record=_call(
                run_id,
                root2,
                rlm,
                "root (iteration 2)",
                model,
                t + 1.72,
                0.6,
                (1100, 20),
                0.0024,
                text="FINAL(15)",
            )
        )
    )
    events.append(
        StepFinished(
            run_id=run_id,
            step_id=rlm,
            status="ok",
            latency_ms=2330.0,
            output="15",
            scratchpad="iterations: 2; sub-calls: 3",
        )
    )
    events.append(
        RunFinished(
            run_id=run_id,
            status="ok",
            latency_ms=2340.0,
            calls=5,
            prompt_tokens=4100,
            completion_tokens=164,
            cost_usd=0.0054,
            output="15",
            finish_reason="stop",
            stats={"rlm_iterations": 2, "rlm_depth": 1, "rlm_sub_calls": 3},
        )
    )
    return events


RUNS = (
    RunSpec("demo-0001", "direct", "chat", 3000, 0.82),
    RunSpec("demo-0002", "moa-v1", "serve", 2400, 2.4, tokens=(600, 180), cost=0.00021),
    RunSpec("demo-0003", "think-v1", "serve", 1800, 1.3, tokens=(300, 60), tool=True),
    RunSpec("demo-0004", "direct", "eval", 1200, 0.7),
    RunSpec("demo-0005", "moa-v1", "serve", 900, 2.9, status="error", cost=None),
    RunSpec("demo-0006", "direct", "serve", 300, 0.65, model="anthropic/claude-sonnet-4-5", cost=0.0003),
    RunSpec("demo-0007", "reflect-v1", "chat", 7200, 3.1, tokens=(800, 240), cost=0.00033),
    RunSpec("demo-0008", "direct", "chat", 4 * 86400, 0.9),
)


def seed_runs(store: TraceStore) -> None:
    """Write the fixed runs (and the RLM run) through the recorder, as the engine would."""
    store.open()
    recorder = TraceRecorder(store)
    for spec in RUNS:
        for event in simple_run(spec):
            recorder(event)
    for event in rlm_run():
        recorder(event)
    store.flush()


def seed_script(store: TraceStore, script: ScriptedRun) -> None:
    """Record a scripted run's events (e.g. a demo fan-out) without playing it in an app."""
    store.open()
    recorder = TraceRecorder(store)
    for entry in script.entries:
        event = getattr(entry, "event", None)
        if event is not None:
            recorder(event)
    store.flush()


EVAL_MODES = {
    # mode: (pass pattern over 12 cases, latency s, cost per case)
    "direct": ("110101101001", 0.8, 0.00004),
    "moa-v1": ("111101111011", 2.6, 0.00021),
    "reflect-v1": ("111101101011", 3.4, 0.00033),
}


def seed_eval(store: TraceStore, eval_id: str = "demo-eval-0001") -> None:
    """An eval of three modes on 12 cases, with fixed scores, latencies and costs."""
    store.open()
    begin_eval(
        store,
        eval_run_id=eval_id,
        file="evals/arithmetic.jsonl",
        file_hash="0" * 64,
        modes=list(EVAL_MODES),
        profile="openai",
        settings={"repeats": 1},
        cases=12,
        created_at=iso(T0 - 5400),
    )
    record_results(store, eval_id, EVAL_MODES, latency_step=0.05, at=T0 - 5000)
    finish_eval(store, eval_id, "done", finished_at=iso(T0 - 5000))


def record_results(
    store: TraceStore,
    eval_id: str,
    modes: Mapping[str, tuple[str, float, float | None]],
    *,
    latency_step: float,
    at: float,
) -> None:
    """One result per case of each mode: `modes` maps a mode to (pass pattern, latency s, cost per
    case or None when unpriced); case i takes `latency_step * i` seconds longer than the first."""
    for mode, (pattern, latency, cost) in modes.items():
        for i, passed in enumerate(pattern):
            case = f"case{i + 1:02d}"
            record_eval_result(
                store,
                EvalResultRecord(
                    id=f"{eval_id}:{mode}:0:{case}",
                    eval_run_id=eval_id,
                    case_id=case,
                    mode=mode,
                    repeat=0,
                    score=float(passed),
                    passed=int(passed),
                    latency_ms=(latency + latency_step * i) * 1000,
                    prompt_tokens=100,
                    completion_tokens=20,
                    tokens=120,
                    cost_usd=cost,
                    calls=1,
                    cached_calls=0,
                    created_at=iso(at),
                    input=f"question {i + 1}",
                    output="42",
                ),
            )
