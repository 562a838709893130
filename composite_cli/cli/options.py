"""Options shared by several commands, and how they become Settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from composite_cli.generation_ranges import MAX_TOKENS, TEMPERATURE

if TYPE_CHECKING:
    from composite_cli.config import Settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (default: $COMPOSITE_CONFIG, ./composite.yaml, then the user config dir).",
        show_default=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Model profile to use (default: $COMPOSITE_PROFILE, the config's profile, then 'local').",
        show_default=False,
    ),
]
ModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="Override one alias for this command: ALIAS=MODEL, e.g. strong=openai/gpt-4.1 "
        "or '*=ollama/llama3'. Repeatable.",
        show_default=False,
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Trace database (default: $COMPOSITE_DB, the config's db, then ./traces.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]
# Data files (eval sets, mode files) name no code to run unless the user allows its module here.
AllowCodeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-code",
        help="Let eval and mode files name functions (scorers, tools) from this module prefix, e.g. "
        "mypkg.scorers (or one function, mypkg.scorers:grade). Repeatable; adds to the config's "
        "allow_code.",
        show_default=False,
    ),
]
NoContentOption = Annotated[
    bool,
    typer.Option("--no-content", help="Store metadata only in the trace: no prompts, answers or messages."),
]


def show_flags_as_flags(command: Any) -> None:
    """Give every flag of `command` and its sub-commands (their --help too) no value placeholder.

    Typer's rich help prints a type after every option, so a flag reads `--json <bool>` as if it
    took a value. An empty metavar is what that help prints instead; parsing is unchanged."""
    for param in command.get_params(typer.Context(command)):  # includes the (cached) help option
        if getattr(param, "is_flag", False) and not getattr(param, "count", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        show_flags_as_flags(sub)


def settings_from(
    config: Path | None,
    profile: str | None,
    models: list[str] | None,
    db: Path | None,
    no_content: bool = False,
    allow_code: list[str] | None = None,
) -> Settings:
    """Settings for this command from its flags, the environment and the config file
    (`allow_code`: the `--allow-code` prefixes, added to the config's)."""
    from composite_cli.config import load_settings

    settings = load_settings(
        config=config, profile=profile, models=models or [], db=db, no_content=no_content
    )
    return settings.allowing_code(allow_code or [])


# The final step's generation flags, in the ranges the server's edge accepts (generation_ranges).
MaxTokensOption = Annotated[
    int | None,
    typer.Option(
        "--max-tokens",
        min=1,
        max=MAX_TOKENS,
        help="Token limit for the final step's answer.",
        show_default=False,
    ),
]
TemperatureOption = Annotated[
    float | None,
    typer.Option(
        "--temperature",
        "-t",
        min=TEMPERATURE[0],
        max=TEMPERATURE[1],
        help="Sampling temperature for the final step.",
        show_default=False,
    ),
]
