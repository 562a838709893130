"""Run an eval: every case × mode × repeat through the engine, scored, each a traced run linked
to the eval, with bounded concurrency, rate-limit backoff, a call cache and resume.

Results are written as they finish (one row per case × mode × repeat, with a deterministic id),
so an interrupted eval keeps everything that finished and `--resume` runs only what is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from composite_cli.calls import describe_error, new_id
from composite_cli.engine.runtime import RunRequest, RunResult
from composite_cli.engine.spec import ModeSpec, parse_mode
from composite_cli.errors import CompositeError
from composite_cli.evals.dataset import EvalCase, EvalFile
from composite_cli.evals.scorers import Score, get_scorer
from composite_cli.runner import Runner
from composite_cli.traces.recorder import iso

_RATE_LIMITED = ("RateLimitError",)
_JUDGE_MODE = """
name: judge
description: The eval judge (one call).
steps:
  - {id: verdict, kind: call, model: __ALIAS__, temperature: 0, max_tokens: 200}
"""


class EvalError(CompositeError):
    """An eval cannot start or resume (unknown eval id, changed file, ...)."""


@dataclass
class EvalSettings:
    modes: list[str]
    repeats: int = 1
    concurrency: int | None = None
    cache: bool = True
    rate_limit_retries: int = 4
    backoff_s: float = 2.0
    retry_errors: bool = False
    # Mode parameter overrides, per mode name: {"moa-v1": {"proposer_max_tokens": 96}}.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ItemResult:
    case: EvalCase
    mode: str
    repeat: int
    score: Score | None
    error: str | None
    latency_ms: float
    run: RunResult | None


@dataclass
class Progress:
    """Per-mode counts, for progress bars and the TUI."""

    total: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    score_sum: dict[str, float] = field(default_factory=dict)

    def accuracy(self, mode: str) -> float | None:
        scored = self.done.get(mode, 0) - self.errors.get(mode, 0)
        return self.score_sum.get(mode, 0.0) / scored if scored else None


def result_id(eval_run_id: str, case_id: str, mode: str, repeat: int) -> str:
    return f"{eval_run_id}:{mode}:{repeat}:{case_id}"


def default_concurrency(runner: Runner, modes: list[ModeSpec]) -> int:
    """Calls to the embedded model run one per pool instance; remote providers take more."""
    local = any(
        str(runner.settings.profile.resolve(alias).get("model", "")).startswith("local/")
        for spec in modes
        for alias in spec.aliases()
    )
    return max(1, os.cpu_count() or 1) if local else 8


class EvalRunner:
    """Runs one eval (new or resumed) and records it."""

    def __init__(
        self,
        runner: Runner,
        settings: EvalSettings,
        on_item: Callable[[ItemResult, Progress], None] | None = None,
    ):
        if runner.store is None:
            raise EvalError("evals need the trace database (tracing cannot be off)")
        self.runner = runner
        self.store = runner.store.open()
        self.settings = settings
        self.on_item = on_item
        self.progress = Progress()
        self._judge_modes: dict[str, ModeSpec] = {}

    # -- bookkeeping --------------------------------------------------------------------------
    def start(self, eval_file: EvalFile, mode_names: list[str]) -> str:
        eval_run_id = new_id()
        self.store.insert(
            "eval_runs",
            {
                "id": eval_run_id,
                "created_at": iso(time.time()),
                "file": str(eval_file.path),
                "file_hash": eval_file.sha256,
                "modes": json.dumps(mode_names),
                "profile": self.runner.settings.profile.name,
                "settings": json.dumps(
                    {
                        "repeats": self.settings.repeats,
                        "cache": self.settings.cache,
                        "concurrency": self.settings.concurrency,
                        "params": self.settings.params,
                    }
                ),
                "status": "running",
                "cases": len(eval_file.cases),
                "pid": os.getpid(),
            },
        )
        self.store.flush()
        return eval_run_id

    def finish(self, eval_run_id: str, status: str) -> None:
        self.store.update("eval_runs", eval_run_id, {"status": status, "finished_at": iso(time.time())})
        self.store.flush()

    def done_ids(self, eval_run_id: str) -> set[str]:
        sql = "select id from eval_results where eval_run_id = ?"
        if self.settings.retry_errors:
            sql += " and error is null"
        with self.store.reader() as db:
            return {row["id"] for row in db.query(sql, [eval_run_id])}

    # -- running ------------------------------------------------------------------------------
    async def run(self, eval_file: EvalFile, eval_run_id: str) -> str:
        """Run every missing case × mode × repeat. Returns the final status (done/interrupted)."""
        specs = {name: self.runner.mode(name) for name in self.settings.modes}
        for name, overrides in self.settings.params.items():
            if name not in specs:
                raise EvalError(f"--param names mode {name!r}, which this eval does not run")
            specs[name].merged_params(overrides)  # unknown or mistyped parameters fail before any call
        done = self.done_ids(eval_run_id)
        work = [
            (case, spec, repeat)
            for spec in specs.values()
            for repeat in range(self.settings.repeats)
            for case in eval_file.cases
            if result_id(eval_run_id, case.id, spec.name, repeat) not in done
        ]
        for spec in specs.values():
            self.progress.total[spec.name] = len(eval_file.cases) * self.settings.repeats
            self.progress.done[spec.name] = self.progress.total[spec.name] - sum(
                1 for w in work if w[1] is spec
            )
        limit = asyncio.Semaphore(
            self.settings.concurrency or default_concurrency(self.runner, list(specs.values()))
        )

        async def guarded(case: EvalCase, spec: ModeSpec, repeat: int) -> None:
            async with limit:
                await self._one(eval_run_id, case, spec, repeat)

        try:
            async with asyncio.TaskGroup() as group:
                for case, spec, repeat in work:
                    group.create_task(guarded(case, spec, repeat))
        except asyncio.CancelledError:
            self.finish(eval_run_id, "interrupted")
            raise
        self.finish(eval_run_id, "done")
        return "done"

    async def _one(self, eval_run_id: str, case: EvalCase, spec: ModeSpec, repeat: int) -> None:
        request = RunRequest(
            messages=[dict(m) for m in case.messages],
            tools=case.tools,
            tool_choice=case.tool_choice,
            params=dict(self.settings.params.get(spec.name, {})),
            source="eval",
            cache_salt=f"repeat{repeat}",
        )
        start = time.perf_counter()
        run: RunResult | None = None
        error: str | None = None
        for attempt in range(self.settings.rate_limit_retries + 1):
            try:
                run = await self.runner.run(spec, request, cache=self.settings.cache)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded as this case's error, not as a wrong answer
                error = describe_error(exc)
                if type(exc).__name__ not in _RATE_LIMITED or attempt == self.settings.rate_limit_retries:
                    break
                await asyncio.sleep(self.settings.backoff_s * (2**attempt) * (0.5 + random.random()))
        judge_runs: list[str] = []
        score: Score | None = None
        if run is not None:
            error = None
            try:
                scorer = get_scorer(case.scorer)
                score = await scorer.score(case, run.message, self._judge(judge_runs))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a scoring failure is this case's error
                error = f"scoring failed: {describe_error(exc)}"
        latency = run.latency_ms if run is not None else (time.perf_counter() - start) * 1000
        self._record(eval_run_id, case, spec.name, repeat, run, score, error, latency, judge_runs)
        item = ItemResult(case, spec.name, repeat, score, error, latency, run)
        self.progress.done[spec.name] = self.progress.done.get(spec.name, 0) + 1
        if error:
            self.progress.errors[spec.name] = self.progress.errors.get(spec.name, 0) + 1
        elif score is not None:
            self.progress.score_sum[spec.name] = self.progress.score_sum.get(spec.name, 0.0) + score.value
        if self.on_item is not None:
            self.on_item(item, self.progress)

    def _judge(self, runs: list[str]) -> Callable[[list[dict[str, Any]], str], Any]:
        """The judge scorer's model: a one-call mode, traced and costed as its own run."""

        async def judge(messages: list[dict[str, Any]], alias: str) -> str:
            spec = self._judge_modes.get(alias)
            if spec is None:
                spec = self._judge_modes[alias] = parse_mode(_JUDGE_MODE.replace("__ALIAS__", alias))
            result = await self.runner.run(
                spec, RunRequest(messages=messages, source="eval-judge"), cache=self.settings.cache
            )
            runs.append(result.run_id)
            return result.text

        return judge

    def _record(
        self,
        eval_run_id: str,
        case: EvalCase,
        mode: str,
        repeat: int,
        run: RunResult | None,
        score: Score | None,
        error: str | None,
        latency: float,
        judge_runs: list[str],
    ) -> None:
        output = None
        if run is not None:
            calls = run.message.get("tool_calls")
            output = run.text if not calls else json.dumps(calls, ensure_ascii=False)
        self.store.upsert(
            "eval_results",
            {
                "id": result_id(eval_run_id, case.id, mode, repeat),
                "eval_run_id": eval_run_id,
                "case_id": case.id,
                "mode": mode,
                "repeat": repeat,
                "run_id": run.run_id if run else None,
                "judge_run_id": judge_runs[-1] if judge_runs else None,
                "score": score.value if score and not error else None,
                "passed": (1 if score.passed else 0) if score and not error else None,
                "explanation": score.explanation if score else None,
                "latency_ms": round(latency, 3),
                "prompt_tokens": run.prompt_tokens if run else None,
                "completion_tokens": run.completion_tokens if run else None,
                "tokens": (run.prompt_tokens + run.completion_tokens) if run else None,
                "cost_usd": run.cost_usd if run else None,
                "calls": run.calls if run else None,
                "cached_calls": run.cached_calls if run else None,
                "error": error,
                "created_at": iso(time.time()),
                "input": case.input_text[:2000],
                "output": (output or "")[:4000] if output is not None else None,
            },
        )
