"""`errors.one_line`: the one user line for an expected error, and every edge showing it the same way
(CLI, TUI, background worker, the LiteLLM provider)."""

from __future__ import annotations

import litellm

from composite_cli.errors import (
    ConfigError,
    ModeError,
    ModeValidationError,
    RunTimeout,
    describe_error,
    one_line,
)
from composite_cli.provider import to_litellm_error

KEY = "sk-abcdefghijklmnopqrst"


def invalid_mode() -> ModeValidationError:
    return ModeValidationError(
        [
            ModeError("modes/a.yaml", 3, "steps", "is empty"),
            ModeError("modes/a.yaml", 7, "model", "unknown alias"),
        ]
    )


def test_one_line_for_each_kind_of_error() -> None:
    assert one_line(invalid_mode()) == "modes/a.yaml:3: steps: is empty; modes/a.yaml:7: model: unknown alias"
    assert one_line(ConfigError(f"api_key {KEY} is not allowed here", path="c.yaml", line=2)) == (
        "c.yaml:2: api_key [REDACTED] is not allowed here"
    )
    auth = litellm.AuthenticationError(message=f"bad key {KEY}", llm_provider="openai", model="openai/x")
    assert one_line(auth) == describe_error(auth)
    assert KEY not in (one_line(auth) or "")
    assert one_line(ValueError("a bug")) is None  # not ours: the edge lets it surface
    assert one_line(KeyError("x")) is None


def test_the_tui_shows_the_same_line_and_names_a_bug() -> None:
    from composite_cli.tui.screens.base import error_text

    for exc in (invalid_mode(), ConfigError(f"token {KEY}")):
        assert error_text(exc) == one_line(exc)
    assert error_text(ValueError("boom")) == "ValueError: boom"


def test_the_provider_says_the_error_as_the_cli_does() -> None:
    """Was: str(exc), so a mode with two problems came back on two lines and a secret in a
    composite error reached the HTTP caller unmasked."""
    for exc in (
        invalid_mode(),
        ConfigError(f"api_key {KEY} is not allowed here"),
        RunTimeout("too slow", 1.0),
    ):
        mapped = to_litellm_error(exc, "composite/x")
        text = str(mapped)
        assert one_line(exc) in text
        assert "\n" not in text and KEY not in text
