"""Import a function named by a dotted path, `package.module:function` (custom tools and scorers).

Modules are imported from installed packages and `PYTHONPATH` only: the working directory is not
added, so code is never loaded from it implicitly.

A data file (an eval set, a mode file someone shared) never chooses code to run: a dotted path it
names is imported only when the user allowed its module on the command line (`--allow-code
PREFIX`) or in their config (`allow_code: [PREFIX]`). The check comes before the import, since
importing a module already runs its top level."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

# `package.module:function`
DOTTED_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# What `--allow-code` and `allow_code:` accept: a module (and its submodules), or one function.
ALLOW_PREFIX = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


class DottedPathError(LookupError):
    """The path names no importable function. `reason` is the phrase callers build on."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class CodeNotAllowed(DottedPathError):
    """A data file names code whose module the user did not allow; nothing was imported."""

    def __init__(self, path: str, what: str):
        self.path = path
        self.what = what
        module = path.partition(":")[0]
        super().__init__(
            f"{path!r} names Python code, and a data file may not choose code to run; if you trust "
            f"it, allow its module: --allow-code {module}, or allow_code: [{module}] in your config"
        )


def is_dotted_path(name: str) -> bool:
    """True when `name` has the form `package.module:function`."""
    return bool(DOTTED_PATH.match(name))


def is_allowed(path: str, allow: Iterable[str]) -> bool:
    """True when an entry of `allow` covers `path`: the same `module:function`, the same
    module, or a package the module is inside (`mypkg` covers `mypkg.scorers:f`, not `mypkgx:f`)."""
    module = path.partition(":")[0]
    for entry in allow:
        if ":" in entry:
            if path == entry:
                return True
        elif module == entry or module.startswith(entry + "."):
            return True
    return False


def bad_allow_entry(entry: object) -> str | None:
    """Why `entry` is not a valid `--allow-code` value, or None when it is."""
    if not isinstance(entry, str) or not ALLOW_PREFIX.match(entry):
        return f"{entry!r} is not a module prefix (package.module) or a function (package.module:function)"
    return None


def import_callable(path: str, what: str, *, allow: Iterable[str]) -> Callable[..., Any]:
    """The function at `path`; `what` ("tool", "scorer") goes into the error message.

    Raises CodeNotAllowed, before importing anything, unless an entry of `allow` covers `path`."""
    if not is_allowed(path, allow):
        raise CodeNotAllowed(path, what)
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise DottedPathError(f"cannot import {module_name!r} for {what} {path!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise DottedPathError(f"{what} {path!r}: {module_name} has no function {attr!r}")
    return fn
