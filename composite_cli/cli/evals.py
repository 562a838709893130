"""`composite eval`: run eval sets through modes, report, compare."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from typer.core import TyperGroup

from composite_cli.cli.errors import EXIT_INTERRUPTED, EXIT_INVALID, cli_errors, fail
from composite_cli.cli.options import (
    AllowCodeOption,
    ConfigOption,
    DbOption,
    JsonOption,
    ModelOption,
    NoContentOption,
    ProfileOption,
    settings_from,
)
from composite_cli.errors import CompositeError
from composite_cli.redact import redact_text

if TYPE_CHECKING:
    from rich.console import Console

    from composite_cli.evals.runner import Eta, Progress
    from composite_cli.evals.session import EvalSession
    from composite_cli.runner import Runner


class EvalGroup(TyperGroup):
    """`composite eval FILE ...` means `composite eval run FILE ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=EvalGroup,
    no_args_is_help=True,
    help="Run eval sets through modes and compare them: `composite eval FILE --modes a,b`, then "
    "`report`, `compare`, `list`.",
)

MarkdownOption = Annotated[bool, typer.Option("--markdown", help="Print the report as Markdown.")]
TICK_S = 1.0  # how often the progress display looks at the clock (ETA, lines for slow modes)


def _print_report(
    runner: Runner, eval_run_id: str, as_json: bool, markdown: bool, plot: Path | None = None
) -> None:
    from rich.console import Console

    from composite_cli.evals.report import build_report, render_markdown, render_text

    assert runner.store is not None
    runner.store.flush()
    report = build_report(runner.store, eval_run_id)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    elif markdown:
        typer.echo(render_markdown(report))
    else:
        Console(width=max(100, Console().width)).print(render_text(report))
    if plot is not None:
        from composite_cli.evals.plot import write_plot

        # on stderr: the report on stdout stays JSON or Markdown
        typer.echo(f"Charts (quality vs cost, quality vs latency): {write_plot(report, plot)}", err=True)


@app.command("run")
def run(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="Eval file (JSONL), e.g. evals/chess.jsonl.", show_default=False)
    ] = None,
    modes: Annotated[
        str, typer.Option("--modes", "-m", help="Comma-separated modes, e.g. direct,moa,reflect.")
    ] = "direct",
    repeats: Annotated[
        int, typer.Option("--repeats", "-k", min=1, help="Run each case k times (pass@k, pass^k).")
    ] = 1,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            help="Cases run at once (default: cores for the embedded model, else 8).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Processes that run the cases, all writing to the one trace database (for CPU-bound "
            "evals: one per core).",
        ),
    ] = 1,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Run only slice i of N of the selected cases (e.g. 2/4), to split one eval over N "
            "machines; combine them with `composite eval merge`.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Only the first N cases (after --filter).", show_default=False),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help="Only cases with this tag (repeatable: any of them).", show_default=False
        ),
    ] = None,
    scorer: Annotated[
        str | None,
        typer.Option(
            "--scorer", help="Default scorer for lines that name none (default: exact).", show_default=False
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Run the valid lines and report the invalid ones, instead of refusing to start.",
        ),
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Call the models even for requests already in the call cache.")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            help="Finish the missing cases of an interrupted eval (its id, a unique prefix, or `latest`).",
            show_default=False,
        ),
    ] = None,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="With --resume, also rerun cases that ended in an error.")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Override a mode parameter: MODE.KEY=VALUE, e.g. moa.proposer_max_tokens=96. Repeatable.",
            show_default=False,
        ),
    ] = None,
    allow_code: AllowCodeOption = None,
    as_json: JsonOption = False,
    markdown: MarkdownOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print progress on stderr.")] = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    model: ModelOption = None,
    db: DbOption = None,
    no_content: NoContentOption = False,
) -> None:
    """Run every case of FILE through each mode, score it, and print the comparison.

    Examples:

      composite eval evals/chess.jsonl --modes direct,moa,reflect

      composite eval evals/arithmetic.jsonl -m direct,moa --limit 20 --markdown

      composite eval --resume 18eb3c...  # after Ctrl-C or a crash

      composite eval evals/arithmetic.jsonl -m direct,moa --shard 2/4 --db shard2.db

    A line that names a custom scorer (package.module:function) runs only with --allow-code for
    its module (or allow_code in your config); --scorer is your own choice and needs none.
    """
    from composite_cli.evals.session import EvalSessions
    from composite_cli.evals.shard import parse_shard
    from composite_cli.runner import Runner

    with cli_errors(), invalid_eval_file():
        if resume:
            _refuse_selection_on_resume(ctx)
        chosen_shard = parse_shard(shard) if shard is not None else None
        settings = settings_from(config, profile, model, db, no_content, allow_code)
        runner = Runner(settings)
        try:
            sessions = EvalSessions(runner)
            if resume:
                session = sessions.resume(
                    resume,
                    concurrency=concurrency,
                    cache=not no_cache,
                    retry_errors=retry_errors,
                    params=_mode_params(runner, param or []),
                    workers=workers,
                )
            else:
                if file is None:
                    raise fail("give an eval file, or --resume EVAL_ID", EXIT_INVALID)
                session = sessions.start(
                    file,
                    [m.strip() for m in modes.split(",") if m.strip()],
                    tags=tag or [],
                    limit=limit,
                    scorer=scorer,
                    skip_invalid=skip_invalid,
                    repeats=repeats,
                    concurrency=concurrency,
                    cache=not no_cache,
                    params=_mode_params(runner, param or []),
                    shard=chosen_shard,
                    workers=workers,
                )
                for err in session.skipped:
                    typer.echo(f"skipped {err.one_line()}", err=True)
            display = None if quiet else progress_display(sys.stderr)
            if display is not None:
                session.subscribe(display)
            saved_shard = session.shard_text
            slots, used = session.plan()
            processes = f" in {used} worker process{'es' if used > 1 else ''}" if workers > 1 else ""
            if used < workers:
                processes += f" (not {workers}: at most one per case run at once, and {slots} run at once)"
            typer.echo(
                f"eval {session.eval_run_id}: {len(session.cases)} cases × {len(session.settings.modes)} "
                f"modes × {session.settings.repeats} repeats"
                + (f" (shard {saved_shard})" if saved_shard else "")
                + processes,
                err=True,
            )
            try:
                interrupted = _run(session, display)
            except CompositeError as exc:  # the eval is recorded `error`; what finished is kept
                _print_report(runner, session.eval_run_id, as_json, markdown)
                raise fail(
                    f"{exc}; finished results are kept. Resume with: {session.resume_command()}"
                ) from None
            _print_report(runner, session.eval_run_id, as_json, markdown)
            if interrupted:
                typer.echo(
                    f"Interrupted: finished results are kept. Resume with: {session.resume_command()}",
                    err=True,
                )
                raise typer.Exit(EXIT_INTERRUPTED)
        finally:
            runner.close()


# What chooses an eval's work: a resumed eval runs exactly what it started with.
_SELECTION_OPTIONS = {
    "file": "FILE",
    "modes": "--modes",
    "repeats": "--repeats",
    "limit": "--limit",
    "tag": "--filter",
    "scorer": "--scorer",
    "skip_invalid": "--skip-invalid",
    "shard": "--shard",
}


def _refuse_selection_on_resume(ctx: typer.Context) -> None:
    def given_by_user(name: str) -> bool:
        # by its name: Typer carries its own copy of click, whose ParameterSource is not click's
        source = ctx.get_parameter_source(name)
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    given = [flag for name, flag in _SELECTION_OPTIONS.items() if given_by_user(name)]
    if given:
        raise fail(
            f"{', '.join(given)} cannot be used with --resume: an eval resumes exactly the cases, modes, "
            "repeats and shard it started with (start a new eval to change them)",
            EXIT_INVALID,
        )


@contextmanager
def invalid_eval_file() -> Iterator[None]:
    """An eval file with problems: each on its own line (`file:line: message`), exit code 2; so are
    no case left to run and a missing file to resume."""
    from composite_cli.evals.dataset import EvalFileError
    from composite_cli.evals.session import EvalFileMissing, NoCaseSelected
    from composite_cli.evals.shard import BadShard

    try:
        yield
    except EvalFileError as exc:
        for err in exc.errors:
            typer.echo(redact_text(err.one_line()), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    except NoCaseSelected as exc:
        for skipped in exc.skipped:
            typer.echo(f"skipped {redact_text(skipped.one_line())}", err=True)
        raise fail(str(exc), EXIT_INVALID) from None
    except (EvalFileMissing, BadShard) as exc:  # as a missing file named on the command line
        raise fail(str(exc), EXIT_INVALID) from None


def _mode_params(runner: Runner, items: list[str]) -> dict[str, dict[str, Any]]:
    """`--param MODE.KEY=VALUE` → {full mode name: {key: value}} (values read as YAML)."""
    from composite_cli.cli.chat import parse_params

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, rest = item.partition(".")
        if not sep or "=" not in rest:
            raise fail(f"--param expects MODE.KEY=VALUE (e.g. moa.proposer_max_tokens=96), got {item!r}", 2)
        out.setdefault(runner.mode(target).name, {}).update(parse_params([rest]))
    return out


def _run(session: EvalSession, display: ProgressBars | ProgressLines | None) -> bool:
    """Run the eval; True when Ctrl-C stopped it (results so far are kept)."""
    import asyncio
    from contextlib import nullcontext

    try:
        with display if display is not None else nullcontext():
            # the display also looks every TICK_S, so the ETA moves and a slow mode is never silent
            asyncio.run(session.run(tick_s=TICK_S if display is not None else None))
    except KeyboardInterrupt:
        session.interrupted()
        return True
    return False


def eta_text(eta: Eta | None) -> str:
    """`0:05:20`; `≥0:05:20` while it rests on cases still running; `~` when partly guessed."""
    if eta is None:
        return "-:--:--"
    minutes, seconds = divmod(int(eta.seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    mark = "~" if eta.rough else "≥" if eta.at_least else ""
    return f"{mark}{hours}:{minutes:02d}:{seconds:02d}"


def _score_text(progress: Progress, mode: str) -> str:
    acc = progress.accuracy(mode)
    return "-" if acc is None else f"{acc * 100:.0f}%"


def progress_line(progress: Progress, mode: str) -> str:
    """One plain progress line for a mode (for logs and pipes)."""
    eta = progress.eta(mode)
    return (
        f"{mode}: {progress.done.get(mode, 0)}/{progress.total.get(mode, 0)} done, "
        f"{len(progress.running.get(mode, {}))} running, {progress.errors.get(mode, 0)} errors, "
        f"{progress.partial.get(mode, 0)} partial, score {_score_text(progress, mode)}, "
        f"ETA {'unknown' if eta is None else eta_text(eta)}"
    )


class ProgressBars:
    """A bar per mode on a terminal, on screen from the plan (0/total) to the end. The ETA (a walk
    over the cases still queued) is recomputed at most every `eta_every_s`, so thousands of fast
    cases do not spend their time estimating."""

    def __init__(
        self,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
        eta_every_s: float = 0.5,
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as RichProgress

        self.bars = RichProgress(
            TextColumn("{task.description:>16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            console=console or Console(stderr=True),
        )
        self.tasks: dict[str, Any] = {}
        self.clock = clock
        self.eta_every_s = eta_every_s
        self.etas: dict[str, str] = {}
        self.eta_at: float | None = None

    def __enter__(self) -> ProgressBars:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def __call__(self, progress: Progress) -> None:
        now = self.clock()
        fresh = self.eta_at is None or now - self.eta_at >= self.eta_every_s
        if fresh:
            self.eta_at = now
        for mode, total in progress.total.items():
            if mode not in self.tasks:
                self.tasks[mode] = self.bars.add_task(mode, total=total, note="")
            if fresh or progress.done.get(mode, 0) >= total:
                self.etas[mode] = eta_text(progress.eta(mode))
            note = (
                f"{progress.errors.get(mode, 0)} errors · {progress.partial.get(mode, 0)} partial · "
                f"score {_score_text(progress, mode)} · ETA {self.etas[mode]}"
            )
            self.bars.update(self.tasks[mode], total=total, completed=progress.done.get(mode, 0), note=note)


class ProgressLines:
    """Plain progress lines when stderr is not a terminal (a pipe, a log, CI). Per mode: a line
    when the plan is known (0/total), when it passes another tenth of its cases, when its counts
    changed and `every_s` passed, when nothing was said for `quiet_s` (a slow mode is never
    silent), and a last one when it ends (or the eval is stopped)."""

    def __init__(
        self,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 10.0,
        quiet_s: float = 60.0,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.every_s = every_s
        self.quiet_s = quiet_s
        self.said: dict[str, tuple[float, int, tuple[int, ...]]] = {}  # mode → (when, tenth, counts)
        self.ended: set[str] = set()
        self.last: Progress | None = None

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.last is None:
            return
        for mode in self.last.total:
            said = self.said.get(mode)
            if mode not in self.ended and (said is None or said[2] != self._counts(self.last, mode)):
                self.stream.write(progress_line(self.last, mode) + "\n")
        self.stream.flush()

    @staticmethod
    def _counts(progress: Progress, mode: str) -> tuple[int, ...]:
        return (progress.done.get(mode, 0), progress.errors.get(mode, 0), progress.partial.get(mode, 0))

    def __call__(self, progress: Progress) -> None:
        self.last = progress
        now = self.clock()
        for mode, total in progress.total.items():
            if mode in self.ended:
                continue
            counts = self._counts(progress, mode)
            tenth = counts[0] * 10 // total if total else 10
            said = self.said.get(mode)
            if counts[0] >= total:
                self.ended.add(mode)
            elif said is not None:
                when, said_tenth, said_counts = said
                moved = tenth > said_tenth or (counts != said_counts and now - when >= self.every_s)
                if not moved and now - when < self.quiet_s:
                    continue
            self.said[mode] = (now, tenth, counts)
            self.stream.write(progress_line(progress, mode) + "\n")
        self.stream.flush()


def progress_display(stream: TextIO) -> ProgressBars | ProgressLines:
    """Bars when `stream` is a terminal, plain lines otherwise."""
    if stream.isatty():
        from rich.console import Console

        return ProgressBars(Console(file=stream))
    return ProgressLines(stream)


@app.command("report")
def report(
    eval_run_id: Annotated[
        str,
        typer.Argument(
            help="The eval's id (see `composite eval list`), a unique prefix of one, or `latest`."
        ),
    ],
    as_json: JsonOption = False,
    markdown: MarkdownOption = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also write the quality-vs-cost and quality-vs-latency charts (95% CI whiskers, "
            "Pareto front) to this .svg or .png file. Needs matplotlib (the `plot` extra).",
            metavar="FILE",
        ),
    ] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Print the report of an eval: score with 95% CI, latency, tokens, cost, calls, paired tests."""
    from composite_cli.runner import Runner

    with cli_errors():
        if plot is not None:
            from composite_cli.evals.plot import check_path

            check_path(plot)  # a bad path fails before the report is printed
        runner = Runner(settings_from(config, None, None, db))
        try:
            _print_report(runner, _eval_id(runner, eval_run_id), as_json, markdown, plot)
        finally:
            runner.close()


@app.command("compare")
def compare(
    eval_a: Annotated[str, typer.Argument(help="The earlier eval's id, or a unique prefix of one.")],
    eval_b: Annotated[str, typer.Argument(help="The later eval's id, a unique prefix of one, or `latest`.")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Compare two eval runs case by case: what improved, what regressed, and whether it is noise."""
    from composite_cli.evals.report import compare_runs, render_comparison
    from composite_cli.runner import Runner

    with cli_errors():
        runner = Runner(settings_from(config, None, None, db))
        try:
            assert runner.store is not None
            result = compare_runs(runner.store, _eval_id(runner, eval_a), _eval_id(runner, eval_b))
            typer.echo(json.dumps(result, indent=2, default=str) if as_json else render_comparison(result))
        finally:
            runner.close()


@app.command("merge")
def merge(
    sources: Annotated[
        list[Path],
        typer.Argument(help="The shards' trace databases (one per `--shard i/N` run; read, never changed)."),
    ],
    into: Annotated[
        Path, typer.Option("--into", help="The combined database (created and migrated if needed).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Combine the shards of one eval (`--shard i/N` on N machines) into one eval run, whose report
    is the one a single machine would print.

    Example:

      composite eval merge shard1.db shard2.db shard3.db shard4.db --into all.db
    """
    from composite_cli.evals.merge import merge_shards

    with cli_errors():
        merged = merge_shards(sources, into)
    if as_json:
        typer.echo(json.dumps(vars(merged), indent=2))
        return
    typer.echo(
        f"eval {merged.eval_run_id} ({merged.status}): {len(merged.shards)} shards, {merged.cases} cases, "
        f"{merged.results} results, in {merged.target}. Report: composite eval report "
        f"{merged.eval_run_id} --db {merged.target}"
    )


@app.command("list")
def list_evals(
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """List eval runs, newest first."""
    from composite_cli.runner import Runner
    from composite_cli.traces.reader import TraceReader

    with cli_errors():
        runner = Runner(settings_from(config, None, None, db))
        assert runner.store is not None
        rows = TraceReader(runner.store).eval_runs(limit)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            typer.echo(
                f"{r['id']}  {r['created_at']}  {r['status']:<11}  {r['file']}  "
                f"{','.join(json.loads(r['modes']))}  {r['results']} results"
            )


def _eval_id(runner: Runner, ref: str) -> str:
    """The full eval id named by an id, a unique prefix of one, or `latest` (as `traces show`)."""
    from composite_cli.traces.reader import TraceReader

    assert runner.store is not None
    return TraceReader(runner.store).eval_run_id(ref)
