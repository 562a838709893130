"""`composite traces`: list, show and export recorded runs; merge and prune trace files; browse
them in Datasette."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from composite_cli.cli.errors import EXIT_INVALID, cli_errors, fail
from composite_cli.cli.options import ConfigOption, DbOption, JsonOption, settings_from

if TYPE_CHECKING:
    from composite_cli.traces.reader import TraceReader

app = typer.Typer(
    no_args_is_help=True,
    help="Browse recorded runs: `list`, `show RUN_ID`, `export`; combine and clean trace files with "
    "`merge` and `prune`; open them in Datasette with `browse`.",
)

ModeFilter = Annotated[str | None, typer.Option("--mode", "-m", help="Only runs of this mode (e.g. moa-v1).")]
StatusFilter = Annotated[
    str | None, typer.Option("--status", help="Only runs with this status (ok, error, partial, ...).")
]
SourceFilter = Annotated[
    str | None, typer.Option("--source", help="Only runs from this source (chat, python, eval, serve).")
]


# -- reading -------------------------------------------------------------------------------------


def _reader(config: Path | None, db: Path | None) -> TraceReader:
    from composite_cli.traces.reader import TraceReader

    return TraceReader(settings_from(config, None, None, db).db_path)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def _clip(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command("list")
def list_runs(
    mode: ModeFilter = None,
    status: StatusFilter = None,
    source: SourceFilter = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs, newest first.")] = 20,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """List recent runs, newest first."""
    with cli_errors():
        rows = _reader(config, db).runs(mode=mode, status=status, source=source, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("No runs match.", err=True)
        return
    widths = {k: max(len(str(r[k] or "")) for r in rows) for k in ("mode", "status", "source")}
    for r in rows:
        tokens = (r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0)
        cost = "cost ?" if r["cost_usd"] is None else f"${r['cost_usd']:.6f}"
        typer.echo(
            f"{r['id']}  {(r['created_at'] or '')[:19]}  {r['mode'] or '':<{widths['mode']}}  "
            f"{r['status'] or '':<{widths['status']}}  {r['source'] or '':<{widths['source']}}  "
            f"{r['calls'] or 0:>3} calls  {_ms(r['latency_ms']):>7}  {tokens:>6} tok  {cost}  "
            f"{_clip(r['input'], 40)}"
        )


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or `latest`.")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Show a run and its step tree (model, status, latency, tokens of every step)."""
    from composite_cli.cli.render import step_tree

    with cli_errors():
        # the resolver `tui --trace` uses too
        run, steps, _ = _reader(config, db).trace(run_id)
    if as_json:
        typer.echo(json.dumps({"run": run, "steps": steps}, indent=2, ensure_ascii=False))
        return
    typer.echo(step_tree(run, steps))
    typer.echo(f"created {run['created_at']}  source {run['source']}  profile {run['profile']}")
    for label in ("input", "output", "error"):
        if run.get(label):
            typer.echo(f"{label}: {_clip(run[label], 500)}")


@app.command("export")
def export(
    run_ids: Annotated[
        list[str] | None, typer.Argument(help="Runs to export (ids, prefixes or `latest`); default: all.")
    ] = None,
    mode: ModeFilter = None,
    status: StatusFilter = None,
    source: SourceFilter = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Only the newest N matching runs.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Export runs with their steps as JSON lines (one run per line, oldest first), columns as stored."""
    with cli_errors():
        reader = _reader(config, db)
        ids = [reader.run_id(r) for r in run_ids or []]
    with cli_errors():
        rows = reader.export(ids, mode=mode, status=status, source=source, limit=limit)
        if output is None:
            runs, steps = _write_lines(rows, sys.stdout)
            return
        try:
            with output.open("w", encoding="utf-8") as fp:
                runs, steps = _write_lines(rows, fp)
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc.strerror}") from None
    typer.echo(f"Exported {runs} runs ({steps} steps) to {output}", err=True)


def _write_lines(rows: Iterator[dict[str, Any]], fp: TextIO) -> tuple[int, int]:
    runs = steps = 0
    for row in rows:
        fp.write(json.dumps(row, ensure_ascii=False) + "\n")
        runs += 1
        steps += len(row["steps"])
    fp.flush()
    return runs, steps


# -- merging -------------------------------------------------------------------------------------


@app.command("merge")
def merge(
    sources: Annotated[list[Path], typer.Argument(help="Trace databases to merge (read, never changed).")],
    into: Annotated[
        Path, typer.Option("--into", help="The combined database (created and migrated if needed).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Combine trace files (e.g. one per instance) into one, without duplicates."""
    from composite_cli.traces.maintenance import merge_trace_files

    with cli_errors():
        report = merge_trace_files(sources, into)
    if as_json:
        tables = {k: {**vars(v), "already_there": v.read - v.new} for k, v in report.tables.items()}
        typer.echo(json.dumps({**vars(report), "tables": tables}, indent=2))
        return
    typer.echo(f"Merged {len(sources)} file{'s' if len(sources) != 1 else ''} into {into}")
    for name, stats in report.tables.items():
        typer.echo(
            f"  {name:<13} {stats.read:>7} read  {stats.new:>7} new  "
            f"{stats.read - stats.new:>7} already there"
        )
    if report.dangling:
        typer.echo(f"Warning: {report.dangling} rows refer to rows that none of the files has.", err=True)


# -- pruning -------------------------------------------------------------------------------------


@app.command("prune")
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete runs started longer ago than this: 30d, 12h, 2w, 90m.")
    ],
    vacuum: Annotated[
        bool, typer.Option("--vacuum", help="Then VACUUM the file to give the space back.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="Never delete runs started within this, whatever --older-than says (0s: no grace). "
            "Runs still running are never deleted.",
        ),
    ] = "1h",
    as_json: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Delete old runs with their steps and eval results (eval runs left empty go too). Runs still
    running, and runs started within the grace period (default 1h), are kept."""
    from composite_cli.traces.maintenance import parse_duration, prune_runs

    try:
        seconds = parse_duration(older_than)
        grace_s = parse_duration(grace, "--grace")
    except ValueError as exc:
        raise fail(str(exc), EXIT_INVALID) from None
    with cli_errors():
        report = prune_runs(
            settings_from(config, None, None, db).db_path,
            seconds,
            grace_s=grace_s,
            vacuum=vacuum,
            dry_run=dry_run,
        )
    if as_json:
        typer.echo(json.dumps(vars(report), indent=2))
        return
    verb = "Would delete" if dry_run else "Deleted"
    typer.echo(
        f"{verb} {report.runs} runs, {report.steps} steps, {report.eval_results} eval results and "
        f"{report.eval_runs} eval runs started before {report.cutoff}."
    )
    kept = _kept_line(report.kept_running, report.kept_recent, grace, dry_run)
    if kept:
        typer.echo(kept)
    if report.bytes_after is not None and report.bytes_before is not None:
        typer.echo(
            f"Vacuumed: {report.bytes_before:,} → {report.bytes_after:,} bytes on disk "
            "(the database and its write-ahead log)."
        )
        if report.wal_truncated is False:
            typer.echo(
                "Another process has the database open, so its write-ahead log keeps the old pages "
                "until that process closes it."
            )


def _kept_line(running: int, recent: int, grace: str, dry_run: bool) -> str:
    """Why runs older than the cutoff were not deleted (empty when none were kept)."""
    reasons = []
    if running:
        reasons.append(f"{running} still running (or part of an eval still running)")
    if recent:
        reasons.append(f"{recent} started within the last {grace.strip()} (--grace)")
    if not reasons:
        return ""
    verb = "Would keep" if dry_run else "Kept"
    return f"{verb} {running + recent} older runs: {', '.join(reasons)}."


# -- Datasette -----------------------------------------------------------------------------------

HOST = "127.0.0.1"  # never another interface: traces hold prompts and answers


def datasette_args(path: Path, port: int, metadata: Path, open_browser: bool = False) -> list[str]:
    """Arguments for `datasette serve` on a trace database with composite's metadata."""
    args = [
        "serve",
        str(path),
        "--host",
        HOST,
        "--port",
        str(port),
        "--metadata",
        str(metadata),
        # JSON and long answers stay short in tables; a row page shows them whole.
        "--setting",
        "truncate_cells_html",
        "300",
        # Views over every step (model_stats) can take more than the default second on big files.
        "--setting",
        "sql_time_limit_ms",
        "10000",
    ]
    return [*args, "--open"] if open_browser else args


@app.command("browse")
def browse(
    port: Annotated[int, typer.Option("--port", "-p", help="Port on 127.0.0.1 (0 picks a free one).")] = 8001,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in your web browser.")] = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Browse the trace database in Datasette, with step timelines and canned queries."""
    import tempfile

    import click

    from composite_cli.datasette import metadata_for

    with cli_errors():
        path = settings_from(config, None, None, db).db_path
        if not path.is_file():
            raise fail(f"no trace database at {path} (run `composite chat` first, or pass --db)")
    from datasette.cli import cli as datasette_cli

    from composite_cli.datasette.plugin import register

    register()  # a no-op once the package's Datasette entry point is installed
    with tempfile.TemporaryDirectory(prefix="composite-datasette-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        metadata.write_text(json.dumps(metadata_for([path.stem]), indent=2), encoding="utf-8")
        if port:
            typer.echo(f"Serving {path} at http://{HOST}:{port}/ (Ctrl-C to stop)", err=True)
        try:
            datasette_cli.main(
                datasette_args(path, port, metadata, open_browser), "datasette", standalone_mode=False
            )
        except click.ClickException as exc:
            raise fail(f"datasette: {exc.format_message()}") from None
