"""`composite eval --workers N`: run an eval's cases in N processes, so a CPU-bound eval (LiteLLM's
own request and response handling, scoring, trace rows) uses every core.

The parent plans the eval as for one process and keeps its progress; each worker is a fresh
process (forked from a fork server that imported LiteLLM once, or spawned: never a fork of the
parent, whose threads and event loop it would inherit half-way) with its own Runner and trace
writer on the same database (WAL: one writer per process, each a queue of short transactions).
Workers claim the next case from a shared counter, so a slow case never leaves a worker idle while
another has a queue. They tell the parent when a case starts and ends; the parent's progress (bars,
lines, ETA, the TUI) is the same as for one process.

Stopping: a worker ignores Ctrl-C (the terminal sends it to the whole process group) and stops
when its parent says so: the parent, cancelled by Ctrl-C or `stop()`, sends each worker `stop`; a
worker whose parent is gone (kill -9) sees its pipe close; SIGTERM stops it too. Either way a
worker cancels its cases (their runs are recorded interrupted), commits its finished rows and
exits, so `--resume` runs exactly what is missing.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from composite_cli.dotted import is_dotted_path
from composite_cli.evals.runner import EvalError, EvalRunner, EvalSettings

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    from composite_cli.config import Settings
    from composite_cli.engine.spec import ModeSpec
    from composite_cli.evals.dataset import EvalCase

_STOP_WAIT_S = 30.0  # how long a stopped worker may take to commit what finished before it is killed


class EvalWorkerFailed(EvalError):
    """A worker process failed (not a case: a case's failure is that case's error)."""


@dataclass(frozen=True)
class WorkerJob:
    """What one worker process is given (pickled once, when it starts)."""

    number: int
    settings: Settings
    eval_settings: EvalSettings
    content: bool
    eval_run_id: str
    # The work of the whole eval, in schedule order: (case, mode name, repeat); a worker runs the
    # items whose index it claims from the shared counter.
    items: list[tuple[EvalCase, str, int]]
    slots: int
    # The parent's environment (API keys...): a fork server started by an earlier eval in this
    # process has the environment of then (multiprocessing passes on the directory and sys.path).
    environ: dict[str, str]
    # The custom scorers (`module:function`) the cases name, checked against the user's allow-list
    # when the parent loaded the eval file: a worker loads them without asking again.
    custom_scorers: list[str]


def share_slots(slots: int, workers: int) -> list[int]:
    """The cases each worker runs at once: `slots` shared out exactly (so `--concurrency` stays the
    total over every worker), one worker per slot at most."""
    workers = max(1, min(workers, slots))
    return [slots // workers + (1 if number < slots % workers else 0) for number in range(workers)]


async def run_in_workers(
    evals: EvalRunner,
    eval_run_id: str,
    work: list[tuple[EvalCase, ModeSpec, int]],
    slots: int,
    workers: int,
) -> None:
    """Run `work` in `workers` processes (at most `slots`), `slots` cases at once in all, keeping
    `evals.progress`. Cancelled: every worker is stopped (finished rows committed) before the
    cancellation goes on. Raises EvalWorkerFailed when a worker fails."""
    ctx = _context()
    counter: Synchronized[int] = ctx.Value("q", 0)
    items = [(case, spec.name, repeat) for case, spec, repeat in work]
    evals.runner.flush()  # the eval's row is committed before any worker reads or writes
    per_worker = share_slots(slots, workers)
    scorers = sorted({case.scorer for case, _, _ in items if is_dotted_path(case.scorer)})
    loop = asyncio.get_running_loop()
    jobs = [
        WorkerJob(
            number=number,
            settings=evals.runner.settings,
            eval_settings=evals.settings,
            content=evals.runner.content,
            eval_run_id=eval_run_id,
            items=items,
            slots=per_worker[number],
            environ=dict(os.environ),
            custom_scorers=scorers,
        )
        for number in range(len(per_worker))
    ]
    # Started in a thread: the first start waits for the fork server to import LiteLLM (seconds),
    # and meanwhile the progress display keeps ticking and Ctrl-C is heard.
    starting = asyncio.ensure_future(asyncio.to_thread(_start_all, ctx, jobs, counter))
    try:
        pipes, processes = await asyncio.shield(starting)
    except asyncio.CancelledError:
        pipes, processes = await starting  # let the starts finish, then stop every worker
        _stop(pipes, processes)
        raise
    listener = _Listener(evals, items, pipes, loop)
    try:
        await listener.ended
    except asyncio.CancelledError:
        _stop(pipes, processes)
        raise
    finally:
        listener.close()
    for process in processes:
        process.join(_STOP_WAIT_S)
    failures = listener.failures + [
        f"worker {n} exited with code {p.exitcode}"
        for n, p in enumerate(processes)
        if p.exitcode not in (0, None) and not any(f.startswith(f"worker {n}:") for f in listener.failures)
    ]
    if failures:
        raise EvalWorkerFailed("eval worker failed: " + "; ".join(failures))


def _start_all(ctx: Any, jobs: list[WorkerJob], counter: Any) -> tuple[list[Connection], list[Any]]:
    """Start a worker process per job; the parent's ends of their pipes, and the processes."""
    pipes: list[Connection] = []
    processes = []
    for job in jobs:
        mine, theirs = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=worker_main, args=(job, theirs, counter), name=f"composite-eval-worker-{job.number}"
        )
        process.start()
        theirs.close()
        pipes.append(mine)
        processes.append(process)
    return pipes, processes


def _context() -> Any:
    """A fork server that has imported LiteLLM once (workers forked from it start warm, and a second
    eval in the same process reuses it), where the platform has one; else spawned processes."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["composite_cli.evals.worker_preload"])
        return ctx
    return multiprocessing.get_context("spawn")


class _Listener:
    """Reads what the workers say (a case started, a case ended, a failure) into the progress."""

    def __init__(
        self,
        evals: EvalRunner,
        items: list[tuple[EvalCase, str, int]],
        pipes: list[Connection],
        loop: asyncio.AbstractEventLoop,
    ):
        self.evals = evals
        self.items = items
        self.pipes = pipes
        self.loop = loop
        self.open = set(range(len(pipes)))
        self.tokens: dict[int, int] = {}  # item index → progress token
        self.failures: list[str] = []
        self.ended: asyncio.Future[None] = loop.create_future()
        for number, pipe in enumerate(pipes):
            loop.add_reader(pipe.fileno(), self._read, number)

    def _read(self, number: int) -> None:
        pipe = self.pipes[number]
        try:
            while pipe.poll():
                self._handle(number, pipe.recv())
        except (EOFError, OSError):
            self._closed(number)

    def _handle(self, number: int, message: tuple[Any, ...]) -> None:
        kind = message[0]
        progress = self.evals.progress
        if kind == "start":
            index = message[1]
            self.tokens[index] = progress.started(self.items[index][1])
        elif kind == "end":
            _, index, error, score, partial = message
            mode = self.items[index][1]
            progress.finished(mode, self.tokens.pop(index, -1), error=error, score=score, partial=partial)
        elif kind == "failed":
            self.failures.append(f"worker {number}: {message[1]}")
        self.evals._notify()

    def _closed(self, number: int) -> None:
        if number in self.open:
            self.open.discard(number)
            self.loop.remove_reader(self.pipes[number].fileno())
        if not self.open and not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        for number in list(self.open):
            self.loop.remove_reader(self.pipes[number].fileno())
        self.open.clear()
        for pipe in self.pipes:
            pipe.close()


def _stop(pipes: list[Connection], processes: list[Any]) -> None:
    """Ask every worker to stop, wait for it to commit what finished, then kill what is left."""
    for pipe in pipes:
        try:
            pipe.send(("stop",))
        except OSError:
            pass  # that worker has already gone
    for process in processes:
        process.join(_STOP_WAIT_S)
        if process.is_alive():
            process.kill()
            process.join()


# -- the worker process -------------------------------------------------------------------------


def worker_main(job: WorkerJob, pipe: Connection, counter: Synchronized[int]) -> None:
    """The entry point of a worker process: run the claimed cases until none is left or it is
    told to stop; say `failed` (one line) when something other than a case goes wrong."""
    from composite_cli.errors import one_line

    # Ctrl-C is the parent's to handle (it stops every worker, and only once each): never a
    # KeyboardInterrupt traceback from a worker, whatever it is doing when the key is pressed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_work(job, pipe, counter))
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which reports it as one line
        try:
            pipe.send(("failed", one_line(exc) or f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
        raise SystemExit(1) from None
    finally:
        pipe.close()


async def _work(job: WorkerJob, pipe: Connection, counter: Synchronized[int]) -> None:
    from composite_cli.evals.scorers.custom import load_custom
    from composite_cli.runner import Runner

    os.environ.clear()
    os.environ.update(job.environ)
    for path in job.custom_scorers:
        load_custom(path, allow=[path])
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def stop() -> None:
        main.cancel()

    def parent_said() -> None:
        try:
            while pipe.poll():
                pipe.recv()  # only `stop` is ever sent
                stop()
        except (EOFError, OSError):  # the parent is gone
            loop.remove_reader(pipe.fileno())
            stop()

    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_reader(pipe.fileno(), parent_said)
    runner = Runner(job.settings, content=job.content)
    try:
        evals = EvalRunner(runner, job.eval_settings)
        specs = evals.check_params()

        def claim() -> int | None:
            with counter.get_lock():
                index = int(counter.value)
                if index >= len(job.items):
                    return None
                counter.value = index + 1
            return index

        async def slot() -> None:
            while (index := claim()) is not None:
                case, mode, repeat = job.items[index]
                pipe.send(("start", index))
                outcome = await evals.run_case(job.eval_run_id, case, specs[mode], repeat)
                pipe.send(("end", index, outcome.error, outcome.score, outcome.partial))

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(job.slots):
                    group.create_task(slot())
        except asyncio.CancelledError:
            pass  # stopped: what finished is recorded, the runs in flight were marked interrupted
    finally:
        loop.remove_reader(pipe.fileno())
        runner.close()  # commits every queued row
