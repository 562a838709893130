"""`composite worker`: see and stop the warm background worker that `composite chat` reuses."""

from __future__ import annotations

import json

import typer

from composite_cli.cli.errors import cli_errors
from composite_cli.cli.options import JsonOption

app = typer.Typer(
    no_args_is_help=True,
    help="See or stop the warm background worker that `composite chat` reuses.\n\n"
    "`composite chat` starts it on first use and reuses it, so only the first command of a session "
    "imports LiteLLM. It exits after COMPOSITE_WORKER_IDLE seconds without a command (default 600). "
    "COMPOSITE_NO_WORKER=1 or `composite --no-worker` turns it off.",
)

_WHY = {
    "version": "another composite version",
    "code": "other composite code (the source changed since it started)",
    "environment": "another environment (API keys, COMPOSITE_*, LITELLM_*, ...)",
}


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Whether a worker runs, since when, how busy, and whether commands from this shell can use it."""
    from composite_cli.worker.client import WorkerClient
    from composite_cli.worker.paths import worker_paths

    with cli_errors():
        paths = worker_paths()
        info = WorkerClient(paths).status()
    if as_json:
        typer.echo(json.dumps(info if info is not None else {"running": False, "socket": str(paths.socket)}))
        return
    if info is None:
        typer.echo(f"No worker running ({paths.socket}).")
        return
    why = info.get("matches")
    usable = "yes" if why is None else f"no: it runs {_WHY.get(why, why)}"
    typer.echo(
        f"Worker pid {info['pid']} (composite {info['version']}), up {_duration(info['uptime_s'])}, "
        f"idle {_duration(info['idle_s'])} of {_duration(info['idle_timeout_s'])}.\n"
        f"Runs: {info['active_runs']} active, {info['runs_served']} served.\n"
        f"Usable from this shell: {usable}.\n"
        f"Socket: {info['socket']}  Log: {paths.log}"
    )


@app.command("stop")
def stop() -> None:
    """Stop the worker (runs in progress are cancelled); the next command starts a new one."""
    from composite_cli.worker.client import WorkerClient
    from composite_cli.worker.paths import worker_paths

    with cli_errors():
        reply = WorkerClient(worker_paths()).stop()
    if reply is None:
        typer.echo("No worker running.")
    else:
        typer.echo(f"Stopped the worker (pid {reply.get('pid')}).")
