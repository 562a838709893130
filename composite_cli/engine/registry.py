"""The registry of step kinds: each kind registers itself by name; the parser looks it up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from composite_cli.engine.steps.base import Step

S = TypeVar("S", bound="type[Step]")

STEP_KINDS: dict[str, type[Step]] = {}


def step_kind(name: str) -> Callable[[S], S]:
    """Class decorator: register a Step subclass under `name`."""

    def register(cls: S) -> S:
        cls.kind = name
        STEP_KINDS[name] = cls
        return cls

    return register


def known_kinds() -> list[str]:
    _load_builtin_kinds()
    return sorted(STEP_KINDS)


def get_kind(name: str) -> type[Step] | None:
    _load_builtin_kinds()
    return STEP_KINDS.get(name)


def _load_builtin_kinds() -> None:
    # Importing the package runs each kind's @step_kind decorator.
    import composite_cli.engine.steps  # noqa: F401
