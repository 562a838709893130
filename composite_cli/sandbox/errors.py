"""Exceptions of the sandboxed REPL."""

from __future__ import annotations

from composite_cli.errors import CompositeError


class SandboxError(CompositeError):
    """Something went wrong with the sandboxed REPL itself (not with the model's code)."""


class SandboxStartError(SandboxError):
    """The REPL process could not be started or confined."""


class SandboxDead(SandboxError):
    """The REPL process was killed or closed and will not be restarted."""


class SandboxVariableError(SandboxError):
    """A REPL variable is missing or could not be turned into a string."""
