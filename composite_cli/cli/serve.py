"""`composite serve`: every mode as an OpenAI-compatible model, through the LiteLLM proxy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from composite_cli.cli.errors import cli_errors, fail
from composite_cli.cli.options import AllowCodeOption, ConfigOption, DbOption, ProfileOption, settings_from

if TYPE_CHECKING:
    from composite_cli.serve.server import ServePlan

# LiteLLM, FastAPI and uvicorn are imported inside the command, so `composite --help` stays fast.

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _split(modes: str | None) -> list[str]:
    return [m.strip() for m in (modes or "").split(",") if m.strip()]


def _banner(p: ServePlan) -> None:
    def say(text: str) -> None:
        typer.echo(text, err=True)

    workers = f", {p.workers} workers" if p.workers > 1 else ""
    say(f"composite serve: {p.url}{workers}  profile {p.settings.profile.name}  traces {p.settings.db_path}")
    say("models: " + ", ".join(name for m in p.served for name in m.names))
    if p.key.source == "generated":
        say(f"master key (generated; stored in {p.key.path}, shown only now):")
        say(f"  {p.key.value}")
    elif p.key.source == "stored":
        say(f"master key: the one stored in {p.key.path}")
    else:
        say(f"master key: from {p.key.source}")
    say("introspection: /composite/modes, /composite/traces/{run_id}, /composite/metrics/summary")


def serve(
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on. Beyond loopback needs an explicit --master-key."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 4000,
    modes: Annotated[
        str | None,
        typer.Option(
            "--modes", help="Serve only these modes (comma-separated; short names work).", show_default=False
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (they share the one trace database).")
    ] = 1,
    master_key: Annotated[
        str | None,
        typer.Option(
            "--master-key",
            help="The key clients must send (default: $LITELLM_MASTER_KEY, else a generated key stored "
            "in the user config dir).",
            show_default=False,
        ),
    ] = None,
    litellm_config: Annotated[
        Path | None,
        typer.Option(
            "--litellm-config",
            help="Your own LiteLLM proxy config.yaml, merged in (its models sit beside the modes).",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0, help="Seconds in-flight requests get to finish on SIGTERM."),
    ] = 30.0,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print a config.yaml snippet that adds composite to an existing LiteLLM proxy.",
        ),
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help=f"Server log level: {', '.join(LOG_LEVELS)}.")
    ] = "info",
    config: ConfigOption = None,
    profile: ProfileOption = None,
    db: DbOption = None,
    allow_code: AllowCodeOption = None,
) -> None:
    """Serve every mode as an OpenAI-compatible model (`composite/moa-v1`, `moa`, ...) through the
    LiteLLM proxy, with an introspection API under /composite/.

    Examples:

      composite serve --profile openai

      composite serve --modes moa,direct --litellm-config litellm.yaml --workers 2

      composite serve --print-config >> litellm.yaml
    """
    from composite_cli.serve import config as proxy_config
    from composite_cli.serve import server

    with cli_errors():
        if log_level not in LOG_LEVELS:
            raise fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}", 2)
        settings = settings_from(config, profile, None, db, allow_code=allow_code)
        if print_config:
            from composite_cli.engine.library import ModeLibrary

            served = proxy_config.served_modes(ModeLibrary.from_settings(settings), _split(modes))
            typer.echo(proxy_config.snippet(served), nl=False)
            return
        serve_plan = server.plan(
            settings,
            host=host,
            port=port,
            workers=workers,
            grace=grace,
            modes=_split(modes),
            master_key=master_key,
            litellm_config=litellm_config,
            log_level=log_level,
        )
        _banner(serve_plan)
        try:
            server.run(serve_plan)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise fail(f"the server did not start on {serve_plan.url} (see the messages above)") from None
