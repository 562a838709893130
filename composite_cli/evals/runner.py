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
from collections import deque
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
from composite_cli.traces import eval_records
from composite_cli.traces.eval_records import EvalResultRecord
from composite_cli.traces.recorder import iso

_RATE_LIMITED = ("RateLimitError",)
_MIN_AGE_S = 1.0  # a case running for less than this says nothing yet about how long cases take
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
    # Processes that run the cases (1: this one); see evals/workers.py.
    workers: int = 1
    # Mode parameter overrides, per mode name: {"moa-v1": {"proposer_max_tokens": 96}}.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseOutcome:
    """How one case × mode × repeat ended, as progress counts it (its row is already recorded)."""

    error: bool
    score: float | None
    partial: bool


@dataclass
class Eta:
    """Time left, estimated from the cases finished and running so far."""

    seconds: float
    # True when some case latency is only known to be at least its running time (none finished yet).
    at_least: bool = False
    # True when some mode has neither finished nor started a case: its latency is borrowed.
    rough: bool = False


@dataclass
class Progress:
    """Per-mode counts and timings, for progress bars, progress lines and the TUI.

    The eval runner fills it: `plan` before the first case starts, then `started` and `finished`
    around every case. `clock` (monotonic seconds) is injectable so estimates are testable.
    """

    total: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    partial: dict[str, int] = field(default_factory=dict)
    score_sum: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    # Cases running now, per mode: token → start time.
    running: dict[str, dict[int, float]] = field(default_factory=dict)
    # The modes of the cases not started yet, in the order they will start.
    pending: deque[str] = field(default_factory=deque)
    slots: int = 1  # cases run at once
    # Seconds spent on, and number of, the cases finished in this process (not resumed ones).
    busy_s: dict[str, float] = field(default_factory=dict)
    timed: dict[str, int] = field(default_factory=dict)
    _tokens: int = 0

    def plan(self, total: dict[str, int], done: dict[str, int], order: list[str], slots: int) -> None:
        """Totals and already-finished counts per mode, and the modes of the cases to run, in order."""
        self.total = dict(total)
        self.done = dict(done)
        self.pending = deque(order)
        self.slots = max(1, slots)

    def started(self, mode: str) -> int:
        """A case of `mode` starts (the next pending one); returns a token for `finished`."""
        if self.pending and self.pending[0] == mode:
            self.pending.popleft()
        elif mode in self.pending:
            self.pending.remove(mode)
        self._tokens += 1
        self.running.setdefault(mode, {})[self._tokens] = self.clock()
        return self._tokens

    def finished(self, mode: str, token: int, *, error: bool, score: float | None, partial: bool) -> None:
        start = self.running.get(mode, {}).pop(token, None)
        if start is not None:
            self.busy_s[mode] = self.busy_s.get(mode, 0.0) + max(0.0, self.clock() - start)
            self.timed[mode] = self.timed.get(mode, 0) + 1
        self.done[mode] = self.done.get(mode, 0) + 1
        if error:
            self.errors[mode] = self.errors.get(mode, 0) + 1
        elif score is not None:
            self.score_sum[mode] = self.score_sum.get(mode, 0.0) + score
        if partial and not error:
            self.partial[mode] = self.partial.get(mode, 0) + 1

    def accuracy(self, mode: str) -> float | None:
        scored = self.done.get(mode, 0) - self.errors.get(mode, 0)
        return self.score_sum.get(mode, 0.0) / scored if scored else None

    def _case_seconds(self, now: float) -> dict[str, tuple[float, bool]]:
        """Seconds per case of each mode, and whether that is only a lower bound: the mean of the
        finished cases, else how long its oldest running case has run."""
        out: dict[str, tuple[float, bool]] = {}
        for mode in self.total:
            if self.timed.get(mode):
                out[mode] = (self.busy_s[mode] / self.timed[mode], False)
            elif self.running.get(mode):
                age = now - min(self.running[mode].values())
                if age >= _MIN_AGE_S:
                    out[mode] = (age, True)
        return out

    def eta(self, mode: str) -> Eta | None:
        """When the last case of `mode` should finish: the work queued before it and still running,
        shared over the slots, plus one case of its own. None before anything can be estimated."""
        if self.done.get(mode, 0) >= self.total.get(mode, 0):
            return Eta(0.0)
        now = self.clock()
        per_case = self._case_seconds(now)
        if not per_case:
            return None
        borrowed = (max(s for s, _ in per_case.values()), any(low for _, low in per_case.values()))
        rough = False

        def seconds(m: str) -> tuple[float, bool]:
            nonlocal rough
            if m not in per_case:
                rough = True
                return borrowed
            return per_case[m]

        last = max((i for i, m in enumerate(self.pending) if m == mode), default=None)
        if last is None:  # nothing of this mode left to start: its running cases are the end
            each, low = seconds(mode)
            starts = self.running.get(mode, {}).values()
            return Eta(max((max(each - (now - s), 0.0) for s in starts), default=0.0), low, rough)
        at_least = False
        ahead = 0.0
        for m, cases in self.running.items():
            if cases:
                each, low = seconds(m)
                ahead += sum(max(each - (now - start), 0.0) for start in cases.values())
                at_least |= low
        for m in list(self.pending)[:last]:
            each, low = seconds(m)
            ahead += each
            at_least |= low
        each, low = seconds(mode)
        return Eta(ahead / self.slots + each, at_least or low, rough)


def schedule(
    cases: list[EvalCase], modes: list[ModeSpec], repeats: int
) -> list[tuple[EvalCase, ModeSpec, int]]:
    """The order cases start in: repeat by repeat, case by case, every mode in turn, so each mode's
    first cases start early (its bar moves and its ETA is known) and modes finish together."""
    return [(case, spec, repeat) for repeat in range(repeats) for case in cases for spec in modes]


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
        on_progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`on_progress` is called when the plan is known (before any case starts), when a case
        starts and when one finishes."""
        if runner.store is None:
            raise EvalError("evals need the trace database (tracing cannot be off)")
        self.runner = runner
        self.store = runner.store.open()
        self.settings = settings
        self.on_progress = on_progress
        self.progress = Progress(clock=clock)
        self._judge_modes: dict[str, ModeSpec] = {}

    # -- bookkeeping --------------------------------------------------------------------------
    def start(
        self, eval_file: EvalFile, mode_names: list[str], selection: dict[str, Any] | None = None
    ) -> str:
        """Record a new eval of `eval_file`'s cases (the selection: their ids are saved, so a resume
        runs exactly these) with `selection`'s other choices (filters, limit, scorer...)."""
        eval_run_id = new_id()
        settings: dict[str, Any] = {
            "repeats": self.settings.repeats,
            "cache": self.settings.cache,
            "concurrency": self.settings.concurrency,
            "params": self.settings.params,
            "case_ids": [case.id for case in eval_file.cases],
        }
        settings.update(selection or {})
        eval_records.begin_eval(
            self.store,
            eval_run_id=eval_run_id,
            file=str(eval_file.path),
            file_hash=eval_file.sha256,
            modes=mode_names,
            profile=self.runner.settings.profile.name,
            settings=settings,
            cases=len(eval_file.cases),
        )
        return eval_run_id

    def finish(self, eval_run_id: str, status: str) -> None:
        eval_records.finish_eval(self.store, eval_run_id, status)

    def done_ids(self, eval_run_id: str) -> set[str]:
        return eval_records.done_result_ids(
            self.store, eval_run_id, without_errors=self.settings.retry_errors
        )

    def plan(self, specs: list[ModeSpec], runs: int) -> tuple[int, int]:
        """(cases run at once, worker processes) for `runs` runs left: `--concurrency` (or the
        default) is the total over all workers, so there are never more workers than that."""
        slots = min(self.settings.concurrency or default_concurrency(self.runner, specs), max(1, runs))
        return slots, max(1, min(self.settings.workers, slots))

    def check_params(self) -> dict[str, ModeSpec]:
        """The modes to run; raises when `params` names a mode not run, or a parameter a mode lacks
        (before any call)."""
        specs = {name: self.runner.mode(name) for name in self.settings.modes}
        for name, overrides in self.settings.params.items():
            if name not in specs:
                raise EvalError(f"--param names mode {name!r}, which this eval does not run")
            specs[name].merged_params(overrides)  # unknown or mistyped parameters fail before any call
        return specs

    # -- running ------------------------------------------------------------------------------
    async def run(self, eval_file: EvalFile, eval_run_id: str) -> str:
        """Run every missing case × mode × repeat. Returns the final status (done/interrupted)."""
        specs = self.check_params()
        done = self.done_ids(eval_run_id)
        work = deque(
            (case, spec, repeat)
            for case, spec, repeat in schedule(eval_file.cases, list(specs.values()), self.settings.repeats)
            if result_id(eval_run_id, case.id, spec.name, repeat) not in done
        )
        total = {name: len(eval_file.cases) * self.settings.repeats for name in specs}
        left = {name: sum(1 for w in work if w[1].name == name) for name in specs}
        slots, workers = self.plan(list(specs.values()), len(work))
        self.progress.plan(
            total, {name: total[name] - left[name] for name in specs}, [w[1].name for w in work], slots
        )
        self._notify()
        try:
            if workers > 1:
                from composite_cli.evals.workers import run_in_workers

                await run_in_workers(self, eval_run_id, list(work), slots, workers)
            else:
                await self._run_here(eval_run_id, work, slots)
        except asyncio.CancelledError:
            self.finish(eval_run_id, "interrupted")
            raise
        self.finish(eval_run_id, "done")
        return "done"

    async def _run_here(
        self, eval_run_id: str, work: deque[tuple[EvalCase, ModeSpec, int]], slots: int
    ) -> None:
        """Run `work` in this process, `slots` cases at once."""

        async def worker() -> None:
            while work:
                case, spec, repeat = work.popleft()
                await self._one(eval_run_id, case, spec, repeat)

        async with asyncio.TaskGroup() as group:
            for _ in range(slots):
                group.create_task(worker())

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def _one(self, eval_run_id: str, case: EvalCase, spec: ModeSpec, repeat: int) -> None:
        token = self.progress.started(spec.name)
        self._notify()
        outcome = await self.run_case(eval_run_id, case, spec, repeat)
        self.progress.finished(
            spec.name, token, error=outcome.error, score=outcome.score, partial=outcome.partial
        )
        self._notify()

    async def run_case(self, eval_run_id: str, case: EvalCase, spec: ModeSpec, repeat: int) -> CaseOutcome:
        """Run one case × mode × repeat, score it and record its result row."""
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
        return CaseOutcome(
            error=error is not None,
            score=score.value if score is not None else None,
            partial=run is not None and run.status == "partial",
        )

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
        scored = score is not None and not error
        eval_records.record_eval_result(
            self.store,
            EvalResultRecord(
                id=result_id(eval_run_id, case.id, mode, repeat),
                eval_run_id=eval_run_id,
                case_id=case.id,
                mode=mode,
                repeat=repeat,
                run_id=run.run_id if run else None,
                judge_run_id=judge_runs[-1] if judge_runs else None,
                score=score.value if score is not None and scored else None,
                passed=(1 if score.passed else 0) if score is not None and scored else None,
                explanation=score.explanation if score else None,
                latency_ms=round(latency, 3),
                prompt_tokens=run.prompt_tokens if run else None,
                completion_tokens=run.completion_tokens if run else None,
                tokens=(run.prompt_tokens + run.completion_tokens) if run else None,
                cost_usd=run.cost_usd if run else None,
                calls=run.calls if run else None,
                cached_calls=run.cached_calls if run else None,
                error=error,
                created_at=iso(time.time()),
                input=case.input_text[:2000],
                output=output[:4000] if output is not None else None,
            ),
        )
