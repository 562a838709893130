"""Errors `composite serve` raises on purpose; the CLI prints them as one line."""

from __future__ import annotations

from composite_cli.errors import CompositeError


class ServeError(CompositeError):
    """The server cannot start as asked (unsafe bind, bad LiteLLM config, no modes, ...)."""
