"""`composite eval`: run eval sets through modes, report, compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from composite_cli.cli.errors import EXIT_INTERRUPTED, EXIT_INVALID, cli_errors, fail
from composite_cli.cli.options import (
    ConfigOption,
    DbOption,
    JsonOption,
    ModelOption,
    NoContentOption,
    ProfileOption,
    settings_from,
)

if TYPE_CHECKING:
    from composite_cli.evals.dataset import EvalFile
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


def _select(eval_file: EvalFile, tags: list[str], limit: int | None) -> EvalFile:
    if tags:
        eval_file.cases = [c for c in eval_file.cases if set(tags) & set(c.tags)]
    if limit is not None:
        eval_file.cases = eval_file.cases[:limit]
    if not eval_file.cases:
        raise fail("no case left after --filter/--limit", EXIT_INVALID)
    return eval_file


def _print_report(runner: Runner, eval_run_id: str, as_json: bool, markdown: bool) -> None:
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


@app.command("run")
def run(
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
            "--resume", help="Finish the missing cases of an interrupted eval (its id).", show_default=False
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
    as_json: JsonOption = False,
    markdown: MarkdownOption = False,
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
    """
    from composite_cli.evals.dataset import load_eval_file
    from composite_cli.evals.runner import EvalRunner, EvalSettings
    from composite_cli.runner import Runner

    with cli_errors():
        settings = settings_from(config, profile, model, db, no_content)
        runner = Runner(settings)
        try:
            if resume:
                eval_run_id, eval_file, options = _resume(runner, resume)
                mode_names = options["modes"]
            else:
                if file is None:
                    raise fail("give an eval file, or --resume EVAL_ID", EXIT_INVALID)
                mode_names = [runner.mode(m.strip()).name for m in modes.split(",") if m.strip()]
                eval_file = load_eval_file(file, default_scorer=scorer, skip_invalid=skip_invalid)
                for err in eval_file.errors:
                    typer.echo(f"skipped {err.one_line()}", err=True)
                eval_file = _select(eval_file, tag or [], limit)
                options = {"modes": mode_names}
            eval_settings = EvalSettings(
                modes=mode_names,
                repeats=repeats,
                concurrency=concurrency,
                cache=not no_cache,
                retry_errors=retry_errors,
                params=options.get("params") or _mode_params(runner, param or []),
            )
            if resume:
                eval_settings.repeats = int(options.get("repeats", 1))
            progress = _progress_bars(enabled=not as_json and sys.stderr.isatty())
            evals = EvalRunner(runner, eval_settings, on_item=progress.update if progress else None)
            if not resume:
                eval_run_id = evals.start(eval_file, mode_names)
                _save_selection(runner, eval_run_id, tag or [], limit, scorer, repeats, skip_invalid)
            typer.echo(
                f"eval {eval_run_id}: {len(eval_file.cases)} cases × {len(mode_names)} modes × "
                f"{eval_settings.repeats} repeats",
                err=True,
            )
            interrupted = _run(evals, eval_file, eval_run_id, progress)
            _print_report(runner, eval_run_id, as_json, markdown)
            if interrupted:
                typer.echo(
                    f"Interrupted: finished results are kept. Resume with: composite eval --resume "
                    f"{eval_run_id}",
                    err=True,
                )
                raise typer.Exit(EXIT_INTERRUPTED)
        finally:
            runner.close()


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


def _run(evals: Any, eval_file: EvalFile, eval_run_id: str, progress: Any) -> bool:
    """Run the eval; True when Ctrl-C stopped it (results so far are kept)."""
    import asyncio

    try:
        if progress:
            with progress.bars:
                asyncio.run(evals.run(eval_file, eval_run_id))
        else:
            asyncio.run(evals.run(eval_file, eval_run_id))
    except KeyboardInterrupt:
        evals.finish(eval_run_id, "interrupted")
        return True
    return False


def _save_selection(
    runner: Runner,
    eval_run_id: str,
    tags: list[str],
    limit: int | None,
    scorer: str | None,
    repeats: int,
    skip_invalid: bool,
) -> None:
    assert runner.store is not None
    with runner.store.reader() as db:
        current = json.loads(
            db.execute("select settings from eval_runs where id = ?", [eval_run_id]).fetchone()[0]
        )
    current.update(filter=tags, limit=limit, scorer=scorer, repeats=repeats, skip_invalid=skip_invalid)
    runner.store.update("eval_runs", eval_run_id, {"settings": json.dumps(current)})
    runner.store.flush()


def _resume(runner: Runner, eval_run_id: str) -> tuple[str, EvalFile, dict[str, Any]]:
    from composite_cli.evals.dataset import load_eval_file
    from composite_cli.evals.runner import EvalError

    assert runner.store is not None
    with runner.store.reader() as db:
        rows = list(db.query("select * from eval_runs where id = ?", [eval_run_id]))
    if not rows:
        raise EvalError(f"no eval run with id {eval_run_id!r} in {runner.store.path}")
    row = rows[0]
    options = json.loads(row["settings"] or "{}")
    options["modes"] = json.loads(row["modes"])
    eval_file = load_eval_file(
        row["file"], default_scorer=options.get("scorer"), skip_invalid=bool(options.get("skip_invalid"))
    )
    if eval_file.sha256 != row["file_hash"]:
        raise EvalError(f"{row['file']} changed since eval {eval_run_id} started; start a new eval instead")
    eval_file = _select(eval_file, options.get("filter") or [], options.get("limit"))
    runner.store.update("eval_runs", eval_run_id, {"status": "running"})
    return eval_run_id, eval_file, options


class _Bars:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bars = Progress(
            TextColumn("{task.description:>16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[errors]} errors · score {task.fields[acc]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.tasks: dict[str, Any] = {}

    def update(self, item: Any, progress: Any) -> None:
        mode = item.mode
        if mode not in self.tasks:
            self.tasks[mode] = self.bars.add_task(mode, total=progress.total.get(mode, 0), errors=0, acc="-")
        acc = progress.accuracy(mode)
        self.bars.update(
            self.tasks[mode],
            completed=progress.done.get(mode, 0),
            errors=progress.errors.get(mode, 0),
            acc="-" if acc is None else f"{acc * 100:.0f}%",
        )


def _progress_bars(enabled: bool) -> _Bars | None:
    return _Bars() if enabled else None


@app.command("report")
def report(
    eval_run_id: Annotated[
        str, typer.Argument(help="The eval's id (see `composite eval list`), or `latest`.")
    ],
    as_json: JsonOption = False,
    markdown: MarkdownOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Print the report of an eval: score with 95% CI, latency, tokens, cost, calls, paired tests."""
    from composite_cli.runner import Runner

    with cli_errors():
        runner = Runner(settings_from(config, None, None, db))
        try:
            _print_report(runner, _resolve_id(runner, eval_run_id), as_json, markdown)
        finally:
            runner.close()


@app.command("compare")
def compare(
    eval_a: Annotated[str, typer.Argument(help="The earlier eval's id.")],
    eval_b: Annotated[str, typer.Argument(help="The later eval's id (or `latest`).")],
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
            result = compare_runs(runner.store, _resolve_id(runner, eval_a), _resolve_id(runner, eval_b))
            typer.echo(json.dumps(result, indent=2, default=str) if as_json else render_comparison(result))
        finally:
            runner.close()


@app.command("list")
def list_evals(
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """List eval runs, newest first."""
    from composite_cli.runner import Runner

    with cli_errors():
        runner = Runner(settings_from(config, None, None, db))
        assert runner.store is not None
        with runner.store.reader() as conn:
            rows = list(
                conn.query(
                    "select e.id, e.created_at, e.file, e.modes, e.status, e.cases, count(r.id) as results "
                    "from eval_runs e left join eval_results r on r.eval_run_id = e.id "
                    "group by e.id order by e.created_at desc limit ?",
                    [limit],
                )
            )
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            typer.echo(
                f"{r['id']}  {r['created_at']}  {r['status']:<11}  {r['file']}  "
                f"{','.join(json.loads(r['modes']))}  {r['results']} results"
            )


def _resolve_id(runner: Runner, eval_run_id: str) -> str:
    if eval_run_id != "latest":
        return eval_run_id
    from composite_cli.evals.runner import EvalError

    assert runner.store is not None
    with runner.store.reader() as db:
        row = db.execute("select id from eval_runs order by created_at desc limit 1").fetchone()
    if row is None:
        raise EvalError(f"no eval runs in {runner.store.path}")
    return str(row[0])
