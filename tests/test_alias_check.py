"""ModeSpec.check_aliases: does a profile map every alias a mode uses (issue 14: the check lives on
the mode spec, used by `composite modes validate` and the TUI's modes screen)."""

from __future__ import annotations

from pathlib import Path

from composite_cli.config import Profile
from composite_cli.engine.spec import parse_mode

MODE = """\
name: two-models
steps:
  - id: a
    kind: call
    model: strong
  - id: many
    kind: fanout
    experts:
      - {name: x, model: fast}
      - {name: y, model: strong}
  - id: b
    kind: call
    model: fast
"""


def test_every_unmapped_use_is_one_error_at_its_step(tmp_path: Path) -> None:
    path = tmp_path / "two-models.yaml"
    spec = parse_mode(MODE, path)
    errors = spec.check_aliases(Profile("narrow", {"strong": {"model": "openai/x"}}))
    # One line per step that uses an alias the profile lacks, at the step's line, the line
    # `composite modes validate` prints and the TUI's modes screen lists.
    assert [e.one_line() for e in errors] == [
        f"{path}:6: steps[1].model: alias 'fast' is not in profile 'narrow'",
        f"{path}:11: steps[2].model: alias 'fast' is not in profile 'narrow'",
    ]


def test_a_profile_that_maps_everything_passes() -> None:
    spec = parse_mode(MODE)
    assert spec.check_aliases(Profile("both", {"strong": {"model": "a"}, "fast": {"model": "b"}})) == []


def test_the_star_fallback_maps_every_alias() -> None:
    spec = parse_mode(MODE)
    assert spec.check_aliases(Profile("any", {"*": {"model": "openai/x"}})) == []


def test_an_empty_profile_reports_each_alias() -> None:
    spec = parse_mode(MODE)
    missing = {e.message.split("'")[1] for e in spec.check_aliases(Profile("empty", {}))}
    assert missing == {"strong", "fast"}
