"""`composite modes`: list, show and validate mode files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from composite_cli.cli.errors import EXIT_INVALID, cli_errors
from composite_cli.cli.options import (
    AllowCodeOption,
    ConfigOption,
    JsonOption,
    ProfileOption,
    settings_from,
)
from composite_cli.errors import ModeValidationError

if TYPE_CHECKING:
    from composite_cli.config import Profile
    from composite_cli.engine.library import ModeLibrary
    from composite_cli.engine.spec import ModeSpec
    from composite_cli.engine.steps.base import Step

app = typer.Typer(
    help="List, show and validate modes (YAML files in modes/ and your modes_path).", no_args_is_help=True
)


def _library(
    config: Path | None, profile: str | None, allow_code: list[str] | None = None
) -> tuple[ModeLibrary, Profile]:
    from composite_cli.engine.library import ModeLibrary

    settings = settings_from(config, profile, None, None, allow_code=allow_code)
    return ModeLibrary.from_settings(settings), settings.profile


# Words that end with a period without ending the sentence ("Wang et al. 2024", "e.g. moa").
_ABBREVIATIONS = ("et al.", "e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "no.", "fig.")


def _ends_with_abbreviation(head: str) -> bool:
    lower = head.lower()
    return any(
        lower.endswith(a) and (len(lower) == len(a) or not lower[-len(a) - 1].isalnum())
        for a in _ABBREVIATIONS
    )


def _ends_with_initial(head: str) -> bool:
    """An initial, as "J." in "J. Smith": one capital letter standing alone before the period."""
    return len(head) >= 2 and head[-2].isupper() and (len(head) == 2 or head[-3] == " ")


def first_sentence(text: str) -> str:
    """The first sentence of `text`, without its final period (for one-line listings).

    A sentence ends at `.`, `!` or `?` followed by a space or the end, outside parentheses,
    brackets and braces, and not after an abbreviation such as "et al." or "e.g." or an initial."""
    text = " ".join(text.split())
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch in ".!?" and depth == 0 and (i + 1 == len(text) or text[i + 1] == " "):
            head = text[: i + 1]
            if ch == "." and (_ends_with_abbreviation(head) or _ends_with_initial(head)):
                continue
            return head.rstrip(".")
    return text.rstrip(".")


def _calls_text(least: int, most: int) -> str:
    count = str(least) if least == most else f"{least}–{most}"
    return f"{count} call" + ("" if most == 1 else "s")


def mode_rows(library: ModeLibrary) -> list[dict[str, Any]]:
    """One row per mode file for `modes list` (text and --json): name, short name, group, the
    model calls one request makes with the default parameters, aliases, whether a request's `tools`
    reach its models (`client_tools`), description; a file that does not parse has `valid: false`
    and its first error. Ordered by group, then name."""
    from composite_cli.engine.spec import DEFAULT_GROUP, MODE_GROUPS

    shorts = {full: short for short, full in library.short_names().items()}
    rows: list[dict[str, Any]] = []
    for name, path in library.files().items():
        row: dict[str, Any] = {"name": name, "short": shorts.get(name), "path": str(path)}
        try:
            spec = library.load(name)
            calls = spec.expected_calls()
            row.update(
                group=spec.group,
                calls={"least": calls.least, "most": calls.most},
                description=spec.description,
                aliases=spec.aliases(),
                client_tools=spec.takes_client_tools(),
                valid=True,
            )
        except ModeValidationError as exc:
            row.update(
                group=DEFAULT_GROUP,
                calls=None,
                description="",
                aliases=[],
                client_tools=None,
                valid=False,
                error=exc.errors[0].one_line(),
            )
        rows.append(row)
    order = list(MODE_GROUPS)
    return sorted(rows, key=lambda r: (order.index(r["group"]), r["name"]))


# `modes list`'s column for ModeSpec.takes_client_tools.
TOOLS_MARK = "tools"
NO_TOOLS_MARK = "no tools"


@app.command("list")
def list_modes(
    as_json: JsonOption = False, config: ConfigOption = None, allow_code: AllowCodeOption = None
) -> None:
    """List the modes by group: calls per request, aliases, client tools.

    A mode file's `group:` places it; calls are for one request with the default parameters.
    `tools`: a request's `tools` reach the mode's final step; `no tools`: they would reach no
    model, so such a request is refused (HTTP 400 naming `tools`)."""
    from composite_cli.engine.spec import MODE_GROUPS

    with cli_errors():
        library, _ = _library(config, None, allow_code)
        rows = mode_rows(library)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        width = max((len(r["name"]) + (len(r["short"]) + 3 if r["short"] else 0) for r in rows), default=4)
        calls = {r["name"]: _calls_text(r["calls"]["least"], r["calls"]["most"]) for r in rows if r["valid"]}
        calls_width = max((len(c) for c in calls.values()), default=0)
        aliases = {r["name"]: "[" + ", ".join(r["aliases"]) + "]" for r in rows}
        aliases_width = max((len(a) for a in aliases.values()), default=0)
        group = None
        for r in rows:
            if r["group"] != group:
                group = r["group"]
                typer.echo(f"{MODE_GROUPS[group]}:")
            label = r["name"] + (f" ({r['short']})" if r["short"] else "")
            if not r["valid"]:
                typer.echo(f"  {label:<{width}}  INVALID: {r['error']}")
                continue
            first = first_sentence(r["description"])
            tools = TOOLS_MARK if r["client_tools"] else NO_TOOLS_MARK
            typer.echo(
                f"  {label:<{width}}  {calls[r['name']]:<{calls_width}}  "
                f"{aliases[r['name']]:<{aliases_width}}  {tools:<{len(NO_TOOLS_MARK)}}  {first}"
            )


def _tree(steps: list[Step], prefix: str = "") -> list[str]:
    lines = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        summary = step.summary()
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{step.id} ({step.kind}) {summary}".rstrip())
        for child in step.children():
            lines.extend(_tree(child, prefix + ("   " if last else "│  ")))
    return lines


def describe(spec: ModeSpec, profile: Profile) -> str:
    """A mode as text: description, parameters, limits, models, whether it takes the client's
    tools and the step tree."""
    out = [f"{spec.name}: {spec.description}", ""]
    if spec.params:
        out.append("params: " + ", ".join(f"{k}={v}" for k, v in spec.params.items()))
    out.append(f"limits: max_calls={spec.limits.max_calls} deadline={spec.limits.deadline}s")
    models = []
    for alias in spec.aliases():
        model = profile.resolve(alias).get("model") if profile.has(alias) else "(not in profile)"
        models.append(f"{alias} → {model}")
    out.append(f"models ({profile.name}): " + ", ".join(models))
    refusal = spec.client_tools_refusal()
    out.append("client tools: " + ("passed to the final step" if refusal is None else f"refused: {refusal}"))
    out.append("steps:")
    out.extend("  " + line for line in _tree(spec.steps))
    return "\n".join(out)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Mode name (short names work).")],
    yaml: Annotated[bool, typer.Option("--yaml", help="Print the mode file itself.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    allow_code: AllowCodeOption = None,
) -> None:
    """Show a mode: its parameters, limits, models and step tree."""
    with cli_errors():
        library, active = _library(config, profile, allow_code)
        spec = library.load(name)
        if yaml:
            typer.echo(spec.source.rstrip("\n"))
        elif as_json:
            typer.echo(
                json.dumps(
                    {
                        "name": spec.name,
                        "description": spec.description,
                        "path": str(spec.path),
                        "params": spec.params,
                        "limits": {
                            "max_calls": str(spec.limits.max_calls),
                            "deadline": str(spec.limits.deadline),
                        },
                        "aliases": spec.aliases(),
                        "client_tools": spec.takes_client_tools(),
                        "steps": [{"id": s.id, "kind": s.kind, "summary": s.summary()} for s in spec.walk()],
                    },
                    indent=2,
                )
            )
        else:
            typer.echo(describe(spec, active))


@app.command("validate")
def validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Mode files or directories to check (default: every mode).", show_default=False),
    ] = None,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    allow_code: AllowCodeOption = None,
) -> None:
    """Check mode files. Each problem is one line, file:line: field: message; exit code 2 if any.

    A mode that names a tool by package.module:function is valid only with --allow-code for its
    module (or allow_code in your config): a mode file is data and does not choose code to run."""
    from composite_cli.engine.spec import load_mode_file

    with cli_errors():
        library, active = _library(config, profile, allow_code)
        paths: list[Path] = []
        for item in files or []:
            # a directory means every mode file in it
            paths.extend(sorted(item.glob("*.yaml")) if item.is_dir() else [item])
        if not files:
            paths = list(library.files().values())
        bad = 0
        for path in paths:
            if not path.is_file():
                typer.echo(f"{path}: no such file", err=True)
                bad += 1
                continue
            try:
                spec = load_mode_file(path, allow_code=library.allow_code)
                errors = spec.check_aliases(active)
            except ModeValidationError as exc:
                errors = exc.errors
            for err in errors:
                typer.echo(err.one_line(), err=True)
            if errors:
                bad += 1
            else:
                typer.echo(f"ok  {path}")
        if bad:
            raise typer.Exit(EXIT_INVALID)
