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
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, cast

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


T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Named things of one sort (step kinds, scorers, tools): a mapping of the built-ins by name,
    and `resolve`, which also takes `package.module:function` (or `:Class`), imported only when
    `allow` covers it.

    `what` names the sort in messages ("scorer", "tool", "step kind"); `adapt` turns an imported
    object into a T, raising DottedPathError when it is not one; `load` replaces the whole
    dotted-path step (a scorer caches what it loaded); `builtins` imports the modules that
    register the built-ins, on first use. Lookups raise DottedPathError; each caller turns it into
    its own error class, with the file, line and field it knows."""

    def __init__(
        self,
        what: str,
        *,
        adapt: Callable[[str, Any], T] | None = None,
        load: Callable[[str, Iterable[str]], T] | None = None,
        builtins: Callable[[], object] | None = None,
    ):
        self.what = what
        self._items: dict[str, T] = {}
        self._adapt = adapt
        self._load_path = load
        self._builtins = builtins

    def add(self, name: str, item: T) -> T:
        """Register `item` as the built-in `name`."""
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._items[name] = item
        return item

    def _all(self) -> dict[str, T]:
        if self._builtins is not None:
            builtins, self._builtins = self._builtins, None
            builtins()
        return self._items

    def __getitem__(self, name: str) -> T:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def names(self) -> list[str]:
        """The built-in names, sorted."""
        return sorted(self._all())

    def unknown(self, name: str) -> str:
        """The message for a name that is neither a built-in nor a dotted path."""
        known = ", ".join(self.names())
        return f"unknown {self.what} {name!r} (built-ins: {known}; or give package.module:function)"

    def resolve(self, name: str, allow: Iterable[str] = ()) -> T:
        """The built-in called `name`, or what `package.module:function` names when an entry of
        `allow` covers it (nothing is imported otherwise). Raises DottedPathError (CodeNotAllowed
        when not allowed) with a one-line reason."""
        item = self.get(name)
        if item is not None:
            return item
        if not is_dotted_path(name):
            raise DottedPathError(self.unknown(name))
        if self._load_path is not None:
            return self._load_path(name, allow)
        obj = import_callable(name, self.what, allow=allow)
        return self._adapt(name, obj) if self._adapt is not None else cast(T, obj)
