"""Whether this process may use the worker: a flag with no imports, so setting it costs nothing
(`composite --help` must stay fast). The console-script entry point allows it; code that drives the
CLI in-process (tests through CliRunner) never starts a worker; `--no-worker` turns it off."""

from __future__ import annotations

_allowed = False


def allow() -> None:
    global _allowed
    _allowed = True


def disable() -> None:
    global _allowed
    _allowed = False


def allowed() -> bool:
    return _allowed
