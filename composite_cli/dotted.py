"""Import a function named by a dotted path, `package.module:function` (custom tools and scorers).

Modules are imported from installed packages and `PYTHONPATH` only: the working directory is not
added, so code is never loaded from it implicitly."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class DottedPathError(LookupError):
    """The path names no importable function. `reason` is the phrase callers build on."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def import_callable(path: str, what: str) -> Callable[..., Any]:
    """The function at `path`; `what` ("tool", "scorer") goes into the error message."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise DottedPathError(f"cannot import {module_name!r} for {what} {path!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise DottedPathError(f"{what} {path!r}: {module_name} has no function {attr!r}")
    return fn
