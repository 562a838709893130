"""Exception classes; `describe_error`, the one line that names any error (for traces and eval
results); and `one_line`, the one user line for an error we expect, which every edge shows (the CLI,
the TUI, the background worker)."""

from __future__ import annotations

from composite_cli.redact import redact_text

_ERROR_TEXT_LIMIT = 2000  # characters of an error kept in a trace or shown on one line


def describe_error(exc: BaseException) -> str:
    """One line naming the error type once, with secrets masked.

    LiteLLM's messages already start with `litellm.<Name>: ` and often the provider's `<Name>: `
    again; those prefixes (for the class and its bases) are dropped before the name is put in front.
    """
    text = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    name = type(exc).__name__
    names = {cls.__name__ for cls in type(exc).__mro__ if cls.__name__ not in ("object", "BaseException")}
    prefixes = tuple(f"{p}{n}: " for n in names for p in ("litellm.", ""))
    while text.startswith(prefixes):
        text = text.split(": ", 1)[1].lstrip()
    out = f"{name}: {text}" if text else name
    return out[:_ERROR_TEXT_LIMIT]


def _is_litellm_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("litellm", "openai"))


def one_line(exc: BaseException) -> str | None:
    """The one user line for an error we expect, secrets masked; None for anything else (a bug: let
    it surface). Every edge (CLI, TUI, worker) shows errors through this."""
    if isinstance(exc, ModeValidationError):
        return "; ".join(e.one_line() for e in exc.errors)
    if isinstance(exc, CompositeError):
        return redact_text(str(exc))
    if _is_litellm_error(exc):
        return describe_error(exc)
    return None


class CompositeError(Exception):
    """Base class for every error composite raises on purpose."""


class ConfigError(CompositeError):
    """A config file or command-line setting is wrong."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        self.detail = message
        where = path or ""
        if path and line:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class UnknownProfileError(ConfigError):
    """The requested profile is not defined."""


class UnknownAliasError(ConfigError):
    """A mode names a model alias the active profile does not map (and there is no "*")."""


class ModeError(CompositeError):
    """One problem in one mode file, at one line and field."""

    def __init__(self, path: str, line: int | None, field: str, message: str):
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ModeValidationError(CompositeError):
    """A mode file has one or more problems; each is a ModeError."""

    def __init__(self, errors: list[ModeError]):
        self.errors = errors
        super().__init__("\n".join(e.one_line() for e in errors))


class UnknownModeError(CompositeError):
    """No mode has this name."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"unknown mode {name!r}; known modes: {', '.join(known) or '(none)'}")


class BadRequest(CompositeError):
    """The caller's request is invalid (unknown parameter, malformed messages, ...)."""


class BadParameter(BadRequest):
    """A request field the caller sent is wrong; `param` names it (OpenAI's error `param`)."""

    def __init__(self, message: str, param: str):
        self.param = param
        super().__init__(message)


class RunTimeout(CompositeError):
    """The caller's timeout (`timeout=`) passed before the run finished; the run was cancelled."""

    def __init__(self, message: str, timeout_s: float):
        self.timeout_s = timeout_s
        super().__init__(message)


class RunLimitExceeded(CompositeError):
    """A run hit one of its limits (max_calls, deadline)."""

    def __init__(self, limit: str, message: str):
        self.limit = limit
        super().__init__(message)


class StepFailed(CompositeError):
    """A step could not produce a value."""


class StepTimeout(CompositeError):
    """A step took longer than its timeout."""


class FanoutFailed(CompositeError):
    """Too few experts of a fan-out answered."""

    def __init__(self, step: str, succeeded: int, needed: int, errors: list[str]):
        self.step = step
        self.succeeded = succeeded
        self.needed = needed
        self.errors = errors
        first = f" (first error: {errors[0]})" if errors else ""
        super().__init__(
            f"step {step!r}: only {succeeded} expert(s) answered, min_success is {needed}{first}"
        )


class PatternTimeout(CompositeError):
    """A regular expression from a data file ran over its time limit (catastrophic backtracking)."""


class TemplateRenderError(CompositeError):
    """A template failed while rendering (e.g. a bad filter argument at run time)."""


class LocalModelError(CompositeError):
    """The embedded model could not be found or loaded."""


class PlotError(CompositeError):
    """An eval chart cannot be written (an unknown file extension, a path that cannot be written,
    or the plotting library not installed)."""
