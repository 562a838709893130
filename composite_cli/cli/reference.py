"""The README's generated reference sections (run by cog: `cog -r README.md`; checked by
tests/test_readme_generated.py): the step-kind table from the kinds' declarations, `--help` of
the commands, and the trace schema of a freshly migrated database.

Output is the same on every machine: help is click's plain format at a fixed width (no rich
panels, no colours, whatever the terminal), and the schema comes from a new database in a
temporary directory (no paths, no timestamps)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

WIDTH = 100  # the help's line width


def step_kinds() -> str:
    """The step-kind table: one row per kind, its fields from its declaration."""
    from composite_cli.engine.registry import STEP_KINDS
    from composite_cli.engine.steps.base import Step
    from composite_cli.engine.steps.fields import declared_fields, describe_decl

    common = {attr for attr, _ in declared_fields(Step)}
    every = ", ".join(describe_decl(d) for _, d in declared_fields(Step))
    lines = [
        f"Every step has `id` (letters, digits and `_`), `kind`, and {every}.",
        "",
        "| kind | what it does, and its fields |",
        "|---|---|",
    ]
    for name, cls in sorted(STEP_KINDS.items()):
        fields: list[str] = []
        for attr, decl in declared_fields(cls):
            if attr in common:
                continue
            if decl.group and name == "call":
                fields.extend(describe_decl(d) for d in decl.group)
            else:
                fields.append(_group(decl) if decl.group else describe_decl(decl))
        doc = " ".join((cls.__doc__ or "").split())
        lines.append(f"| `{name}` | {_cell(doc)} Fields: {_cell(', '.join(fields))} |")
    return "\n".join(lines) + "\n"


def _group(decl: Any) -> str:
    """A kind's call group: "call fields (as `call`; ...)"."""
    facts = ["as `call`", *([decl.note] if decl.note else [])]
    if decl.scope:
        facts.append("templates also see " + ", ".join(f"`{{{{ {n} }}}}`" for n in decl.scope))
    return f"{decl.doc} ({'; '.join(facts)})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def command_help(*path: str) -> str:
    """`composite <path> --help` in click's plain format, WIDTH columns wide."""
    from typer.main import get_command

    from composite_cli.cli.main import app

    command: Any = get_command(app)  # a fresh click tree: changing it changes nothing else
    ctx = _context(command, "composite", None)
    for name in path:
        sub = command.get_command(ctx, name) if hasattr(command, "get_command") else None
        if sub is None:
            raise LookupError(f"{ctx.command_path} has no command {name!r}")
        command = sub
        ctx = _context(command, name, ctx)
    _plain(command)
    return str(command.get_help(ctx)).rstrip() + "\n"


def _context(command: Any, name: str, parent: Any) -> Any:
    # Typer carries its own copy of click: make the context its commands expect.
    return command.context_class(
        command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )


def _plain(command: Any) -> None:
    """Turn off Typer's rich panels for this command (and its sub-commands)."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)


def help_block(*path: str) -> str:
    """A collapsed Markdown block with `composite <path> --help`."""
    title = " ".join(("composite", *path, "--help"))
    return (
        f"<details><summary><code>{title}</code></summary>\n\n```\n{command_help(*path)}```\n\n</details>\n"
    )


def trace_schema() -> str:
    """Tables and views of a freshly migrated trace database, with their columns."""
    from composite_cli.traces.store import open_database

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "traces.db")
        try:
            tables = [(t, [c.name for c in db[t].columns]) for t in sorted(db.table_names())]
            views = [(v, [c.name for c in db[v].columns]) for v in sorted(db.view_names())]
        finally:
            db.close()
    lines = ["| table | columns |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(f'`{c}`' for c in cols)} |" for name, cols in tables]
    lines += ["", "| view | columns |", "|---|---|"]
    lines += [f"| `{name}` | {', '.join(f'`{c}`' for c in cols)} |" for name, cols in views]
    return "\n".join(lines) + "\n"
