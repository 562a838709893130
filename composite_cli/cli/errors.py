"""The CLI's edge: domain errors become one clear line on stderr and an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from composite_cli.errors import CompositeError, ModeValidationError, one_line
from composite_cli.redact import redact_text

# Exit codes (documented in the README under `composite chat`).
EXIT_ERROR = 1  # the command failed (a run error, a bad config, an unreachable model)
EXIT_INVALID = 2  # bad usage or an invalid mode/eval file
EXIT_PARTIAL = 3  # the answer is partial: a cap (iterations, calls, deadline, budget) stopped the run
EXIT_INTERRUPTED = 130  # Ctrl-C


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print `Error: message` to stderr; return the Exit to raise."""
    typer.echo(f"Error: {redact_text(message)}", err=True)
    return typer.Exit(code)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn known errors into one-line messages (no traceback, so no secrets in locals)."""
    try:
        yield
    except ModeValidationError as exc:
        for err in exc.errors:
            typer.echo(err.one_line(), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    except CompositeError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        message = one_line(exc)
        if message is None:
            raise
        raise fail(message) from None


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def stdout_shares_stderr() -> bool:
    """Whether stdout and stderr go to one place (one terminal, file or pipe), where a line on
    one can land in the middle of a line on the other."""
    try:
        out, err = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation, both: a stream with no descriptor
        return False
    return os.path.samestat(out, err)
