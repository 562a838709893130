"""The registry of step kinds: each built-in kind registers itself by name (@step_kind); a mode
may also name a kind by `package.module:Class`, imported only when the user allowed its module
(`--allow-code`, `allow_code:` in the config), like a tool or a scorer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from composite_cli.dotted import DottedPathError, Registry

if TYPE_CHECKING:
    from composite_cli.engine.steps.base import Step

S = TypeVar("S", bound="type[Step]")


def _load_builtin_kinds() -> None:
    # Importing the package runs each kind's @step_kind decorator.
    import composite_cli.engine.steps  # noqa: F401


def _not_a_kind(name: str, obj: Any) -> str | None:
    """Why `obj` cannot be a step kind, or None."""
    from composite_cli.engine.steps.base import Step

    if not (isinstance(obj, type) and issubclass(obj, Step)) or getattr(obj, "__abstractmethods__", None):
        return f"step kind {name!r} is not a Step subclass with run() (see composite_cli/engine/steps/)"
    if "__dataclass_fields__" not in vars(obj):
        # without it, the fields it declares would be ignored, not read
        return f"step kind {name!r} must be a @dataclass(eq=False), so its declared fields are read"
    return None


def _as_kind(path: str, obj: Any) -> type[Step]:
    problem = _not_a_kind(path, obj)
    if problem:
        raise DottedPathError(problem)
    if not obj.kind:
        obj.kind = path
    return obj


STEP_KINDS: Registry[type[Step]] = Registry("step kind", adapt=_as_kind, builtins=_load_builtin_kinds)


def step_kind(name: str) -> Callable[[S], S]:
    """Class decorator: register a Step subclass under `name`."""

    def register(cls: S) -> S:
        problem = _not_a_kind(name, cls)
        if problem:
            raise TypeError(problem)
        cls.kind = name
        STEP_KINDS.add(name, cls)
        return cls

    return register


def known_kinds() -> list[str]:
    return STEP_KINDS.names()


def get_kind(name: str) -> type[Step] | None:
    """The built-in kind called `name`, or None."""
    return STEP_KINDS.get(name)


def resolve_kind(name: str, allow: Iterable[str] = ()) -> type[Step]:
    """A built-in kind, or `package.module:Class` when `allow` covers it. Raises DottedPathError."""
    return STEP_KINDS.resolve(name, allow)
