"""`composite models`: which model each alias stands for in the active profile."""

from __future__ import annotations

import json

import typer

from composite_cli.cli.errors import cli_errors
from composite_cli.cli.options import ConfigOption, JsonOption, ModelOption, ProfileOption, settings_from
from composite_cli.errors import ModeValidationError

VALUE_WIDTH = 80


def _one_line(value: object, width: int = VALUE_WIDTH) -> str:
    """A parameter's value for the plain-text table: on one line (a multi-line string is shown as
    its repr, newlines escaped) and at most `width` characters, ending in … when cut."""
    text = str(value)
    if "\n" in text or "\r" in text:
        text = repr(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def models(
    as_json: JsonOption = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    model: ModelOption = None,
) -> None:
    """Print the alias → model table for the active profile (with every alias the modes use).
    Long or multi-line values are shortened to one line; `--json` prints them whole."""
    from composite_cli.engine.library import ModeLibrary
    from composite_cli.redact import sanitize_params

    with cli_errors():
        settings = settings_from(config, profile, model, None)
        used: list[str] = []
        library = ModeLibrary.from_settings(settings)  # its modes_path and allow_code
        for name in library.names():
            try:
                for alias in library.load(name).aliases():
                    if alias not in used:
                        used.append(alias)
            except ModeValidationError:
                continue  # `composite modes validate` reports broken modes
        rows = [(alias, sanitize_params(params)) for alias, params in settings.profile.table(used)]
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "profile": settings.profile.name,
                        "config": str(settings.config_path) if settings.config_path else None,
                        "aliases": {alias: params for alias, params in rows},
                    },
                    indent=2,
                )
            )
            return
        source = f" from {settings.config_path}" if settings.config_path else " (built in)"
        typer.echo(f"profile {settings.profile.name}{source}")
        width = max((len(a) for a, _ in rows), default=5)
        for alias, params in rows:
            model_name = params.pop("model", "(unmapped)")
            extra = "  " + " ".join(f"{k}={_one_line(v)}" for k, v in params.items()) if params else ""
            typer.echo(f"  {alias:<{width}}  {model_name}{extra}")
