"""The README's reference sections are generated from the code by cog (`cog -r README.md`):
the step-kind table (from the kinds' declarations), `--help` of the commands it shows, and the
trace schema (from a freshly migrated database). This fails when any of them is stale and says
how to regenerate; .ci/run runs it with the rest of the suite."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
from cogapp import Cog

from composite_cli.cli import reference

README = Path(__file__).resolve().parent.parent / "README.md"
REGENERATE = ".venv/bin/cog -r README.md"


def test_readme_reference_sections_are_current() -> None:
    text = README.read_text(encoding="utf-8")
    fresh = Cog().process_string(text, fname="README.md")
    if fresh != text:
        diff = difflib.unified_diff(
            text.splitlines(keepends=True), fresh.splitlines(keepends=True), "README.md", "regenerated"
        )
        pytest.fail(f"README.md is stale; regenerate it with: {REGENERATE}\n" + "".join(list(diff)[:60]))


def test_the_readme_generates_what_the_issue_asks() -> None:
    text = README.read_text(encoding="utf-8")
    calls = set(re.findall(r"reference\.(\w+\([^)]*\))", text))
    assert {"step_kinds()", "trace_schema()", "help_block()"} <= calls
    # --help of every command that has a section of its own
    for command in re.findall(r"^### `composite (\w+)`", text, flags=re.MULTILINE):
        assert f"help_block({command!r})" in calls, command


def test_help_is_the_same_whatever_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = reference.command_help("chat")
    for name, value in {"COLUMNS": "40", "TERMINAL_WIDTH": "50", "FORCE_COLOR": "1", "NO_COLOR": ""}.items():
        monkeypatch.setenv(name, value)
    again = reference.command_help("chat")
    assert again == expected
    assert "\x1b[" not in again and "╭" not in again  # no colours, no rich panels
    assert max(len(line) for line in again.splitlines()) <= reference.WIDTH


def test_the_schema_has_no_machine_details() -> None:
    schema = reference.trace_schema()
    assert "| `runs` |" in schema and "| `mode_stats` |" in schema
    assert "/tmp" not in schema and str(Path.home()) not in schema
