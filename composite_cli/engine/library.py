"""Where modes come from: the shipped `modes/` directory plus the user's `modes_path`.

A mode's name is its file name without `.yaml`. A short name resolves to the newest version:
`moa` → `moa-v2` if it exists, else `moa-v1`. User directories come first, so a user's file can
replace a shipped mode of the same name.

Every mode file is data, wherever it lies: a tool it names by dotted path loads only inside the
user's `allow_code` prefixes (given to the library by the front end from its settings).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from composite_cli.engine.spec import ModeSpec, load_mode_file
from composite_cli.errors import UnknownModeError

if TYPE_CHECKING:
    from composite_cli.config import Settings

_VERSIONED = re.compile(r"^(?P<base>.+)-v(?P<version>\d+)$")
_PACKAGE = Path(__file__).resolve().parent.parent


def builtin_modes_dir() -> Path:
    """The shipped modes: inside the installed package, or the repository's `modes/`."""
    packaged = _PACKAGE / "_modes"
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / "modes"


def _mtime(directory: Path) -> float:
    try:
        return directory.stat().st_mtime_ns / 1e9
    except OSError:
        return -1.0


class ModeLibrary:
    """Finds, resolves and loads (with a cache keyed on file mtime) mode files."""

    def __init__(
        self, extra_dirs: Iterable[Path] = (), *, include_builtin: bool = True, allow_code: Iterable[str] = ()
    ):
        self.dirs = [Path(d) for d in extra_dirs]
        self.allow_code = tuple(allow_code)
        if include_builtin:
            self.dirs.append(builtin_modes_dir())
        self._cache: dict[Path, tuple[float, ModeSpec]] = {}
        self._listing: tuple[tuple[float, ...], dict[str, Path]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ModeLibrary:
        """The library a front end uses: the user's `modes_path` and `allow_code`, then the shipped
        modes. Build it here rather than by hand, so the allow-list cannot be forgotten."""
        return cls(settings.modes_path, allow_code=settings.allow_code)

    def files(self) -> dict[str, Path]:
        """Mode name → file, first directory wins. Listed again only when a directory changes
        (its mtime), since a server asks on every request."""
        stamp = tuple(_mtime(d) for d in self.dirs)
        if self._listing is not None and self._listing[0] == stamp:
            return dict(self._listing[1])
        found: dict[str, Path] = {}
        for directory in self.dirs:
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.yaml")):
                found.setdefault(path.stem, path)
        self._listing = (stamp, found)
        return dict(found)

    def names(self) -> list[str]:
        return sorted(self.files())

    def short_names(self) -> dict[str, str]:
        """Short name → newest versioned name (`moa` → `moa-v1`)."""
        newest: dict[str, tuple[int, str]] = {}
        for name in self.files():
            match = _VERSIONED.match(name)
            if match:
                base, version = match["base"], int(match["version"])
                if base not in newest or version > newest[base][0]:
                    newest[base] = (version, name)
        return {base: name for base, (_, name) in newest.items()}

    def resolve(self, name: str) -> str:
        """The full mode name for `name` (exact, or a short name)."""
        files = self.files()
        if name in files:
            return name
        short = self.short_names()
        if name in short:
            return short[name]
        raise UnknownModeError(name, sorted(files))

    def path(self, name: str) -> Path:
        return self.files()[self.resolve(name)]

    def load(self, name: str) -> ModeSpec:
        """Load a mode by (short) name. Raises UnknownModeError or ModeValidationError."""
        path = self.path(name)
        mtime = path.stat().st_mtime
        with self._lock:
            cached = self._cache.get(path)
            if cached and cached[0] == mtime:
                return cached[1]
        spec = load_mode_file(path, allow_code=self.allow_code)
        with self._lock:
            self._cache[path] = (mtime, spec)
        return spec
