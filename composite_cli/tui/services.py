"""What the TUI is built from: the runner (settings, modes, trace store), a clock, and timings.

The app reads everything through this object, so tests build it from a fake model, a fixed clock
and fixed trace rows, and the snapshots come out the same on every run.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composite_cli.config import BUILTIN_PROFILES, Profile, Settings
from composite_cli.errors import CompositeError
from composite_cli.runner import Runner
from composite_cli.traces.store import TraceStore

if TYPE_CHECKING:
    from composite_cli.evals.session import EvalSessions

_PACKAGE = Path(__file__).resolve().parent.parent
# Directories never searched for eval files under the working directory (environments, caches).
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv"})
EVAL_FILES_MAX = 200  # files under the working directory offered in the new-eval picker
EVAL_FILES_DEPTH = 3  # directories below the working directory searched
RESUMABLE_STATUSES = ("interrupted", "error")


def shipped_evals_dir() -> Path:
    """The shipped eval sets: inside the installed package, or the repository's `evals/`."""
    packaged = _PACKAGE / "_evals"
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / "evals"


def jsonl_files_under(
    root: Path, *, depth: int = EVAL_FILES_DEPTH, limit: int = EVAL_FILES_MAX
) -> list[Path]:
    """`*.jsonl` files under `root` (relative to it when `root` is `.`), at most `depth` directories
    down, hidden directories and environments skipped, sorted, at most `limit` of them."""
    found: list[Path] = []
    root_depth = len(root.parts)
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and d not in _SKIP_DIRS and len(here.parts) - root_depth < depth
        )
        found.extend(here / name for name in sorted(files) if name.endswith(".jsonl"))
    return sorted(found, key=lambda p: (len(p.parts), str(p)))[:limit]


class FakeClock:
    """A clock that moves only when told to (tests, scripted demos)."""

    def __init__(self, now: float = 1_767_225_600.0):  # 2026-01-01T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TuiServices:
    """Everything the app needs from the outside world."""

    runner: Runner
    clock: Callable[[], float] = time.time
    poll_interval: float = 2.0  # seconds between cheap "did the trace DB change?" checks
    delta_interval: float = 0.05  # streamed text reaches the screen at most 20 times a second
    tick_interval: float = 0.25  # live elapsed times refresh this often while a run is going
    blink: bool = True  # cursor blink (off for snapshots)
    animations: bool = True
    warm_up: bool = True  # import LiteLLM in a thread at start (off for snapshots: steadier timing)
    mode: str = "direct"  # the mode picked when the Run screen opens
    profile: str | None = None  # the profile picked (None: the settings' active profile)
    generation: dict[str, Any] = field(default_factory=dict)  # e.g. max_tokens for the final step
    eval_root: Path = Path(".")  # the working directory: its `*.jsonl` files are offered
    shipped_evals: Path | None = field(default_factory=shipped_evals_dir)

    @property
    def settings(self) -> Settings:
        return self.runner.settings

    @property
    def store(self) -> TraceStore:
        """The trace store to read (the runner's, or one for reading only when tracing is off)."""
        return self.runner.store or TraceStore(self.settings.db_path)

    def profile_names(self) -> list[str]:
        names = [self.settings.profile.name, *self.settings.profiles, *BUILTIN_PROFILES]
        return list(dict.fromkeys(names))

    def profile_named(self, name: str | None) -> Profile:
        """A profile by name; the active one keeps its --model overrides."""
        if name is None or name == self.settings.profile.name:
            return self.settings.profile
        return self.settings.profile_named(name)

    def eval_sessions(self, profile: str | None = None) -> EvalSessions:
        """Starts and resumes evals (the use case the CLI's `composite eval` shares), on `profile`
        (None: the active one). Raises ConfigError for an unknown profile."""
        from composite_cli.evals.session import EvalSessions

        runner = self.runner
        if profile is not None and profile != self.settings.profile.name:
            runner = copy.copy(self.runner)  # the same trace store, library and call cache
            runner.settings = replace(self.settings, profile=self.profile_named(profile))
        return EvalSessions(runner)

    def eval_files(self) -> list[Path]:
        """JSONL files under the working directory (for the new-eval picker)."""
        if not self.eval_root.is_dir():
            return []
        return jsonl_files_under(self.eval_root)

    def shipped_eval_files(self) -> list[Path]:
        """The eval sets shipped with composite, except those already under the working directory."""
        if self.shipped_evals is None or not self.shipped_evals.is_dir():
            return []
        local = {p.resolve() for p in self.eval_files()}
        return sorted(p for p in self.shipped_evals.glob("*.jsonl") if p.resolve() not in local)

    def mode_problems(self) -> dict[str, str]:
        """Mode name -> why it cannot run (its file does not load), for the modes that cannot."""
        library = self.runner.library
        problems: dict[str, str] = {}
        for name in library.names():
            try:
                library.load(name)
            except CompositeError as exc:
                problems[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return problems

    def resumable_evals(self) -> list[dict[str, Any]]:
        """Evals that stopped before their end (interrupted or error), newest first; none when there
        is no trace database yet. Raises TraceStoreError when it cannot be read."""
        from composite_cli.traces.reader import TraceReader

        if self.runner.store is None or not self.settings.db_path.exists():
            return []
        rows = TraceReader(self.store).eval_runs()
        return [r for r in rows if r.get("status") in RESUMABLE_STATUSES]
