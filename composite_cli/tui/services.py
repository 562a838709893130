"""What the TUI is built from: the runner (settings, modes, trace store), a clock, and timings.

The app reads everything through this object, so tests build it from a fake model, a fixed clock
and fixed trace rows, and the snapshots come out the same on every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composite_cli.config import BUILTIN_PROFILES, Profile, Settings
from composite_cli.runner import Runner
from composite_cli.traces.store import TraceStore

if TYPE_CHECKING:
    from composite_cli.evals.session import EvalSessions


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
    eval_dirs: tuple[Path, ...] = (Path("evals"), Path("."))

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

    def eval_sessions(self) -> EvalSessions:
        """Starts and resumes evals (the use case the CLI's `composite eval` shares)."""
        from composite_cli.evals.session import EvalSessions

        return EvalSessions(self.runner)

    def eval_files(self) -> list[Path]:
        """JSONL files in the eval directories (for the new-eval picker)."""
        found: list[Path] = []
        for directory in self.eval_dirs:
            if directory.is_dir():
                found.extend(sorted(p for p in directory.glob("*.jsonl") if p not in found))
        return found
