"""What a client and a worker compare before a run: the code and the environment.

Both are hashes, so no value (an API key) ever crosses the socket. The environment hash covers every
variable except those a terminal or shell sets per window or per command (PWD, TERM, TMUX_PANE, ...):
anything else might change what LiteLLM or composite does, so any other difference makes the
command run in-process instead. The code hash covers composite's version and source files (an
editable install changes without a version bump), the Python interpreter and the installed LiteLLM.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import composite_cli

# Set per shell, window or command; they never change what a run does.
_VOLATILE = frozenset(
    {
        "_",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "TERM",
        "COLORTERM",
        "COLUMNS",
        "LINES",
        "PS1",
        "PS2",
        "PS4",
        "PROMPT_COMMAND",
        "HISTFILE",
        "HISTSIZE",
        "HISTFILESIZE",
        "HISTCONTROL",
        "LS_COLORS",
        "LSCOLORS",
        "WINDOWID",
        "TMUX",
        "TMUX_PANE",
        "STY",
        "WINDOW",
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "GPG_TTY",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "DBUS_SESSION_BUS_ADDRESS",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "MANAGERPID",
        "MAIL",
        "PYTEST_CURRENT_TEST",
        "COMPOSITE_NO_WORKER",
    }
)
_VOLATILE_PREFIXES = (
    "TERM_",
    "XDG_SESSION_",
    "XDG_VTNR",
    "XDG_SEAT",
    "LC_TERMINAL",
    "ITERM_",
    "KITTY_",
    "WEZTERM_",
    "ALACRITTY_",
    "GHOSTTY_",
    "KONSOLE_",
    "GNOME_TERMINAL_",
    "VTE_",
    "VSCODE_",
    "ZELLIJ",
    "WT_",
    "STARSHIP_",
    "BASH_FUNC_",
    "COMP_",
)


def relevant_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that must be equal for a worker to run a client's command."""
    return {k: v for k, v in environ.items() if k not in _VOLATILE and not k.startswith(_VOLATILE_PREFIXES)}


def environment_hash(environ: Mapping[str, str] | None = None) -> str:
    env = relevant_environment(os.environ if environ is None else environ)
    digest = hashlib.sha256()
    for key in sorted(env):
        digest.update(key.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(env[key].encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def _tree_stats(root: Path, digest: hashlib._Hash) -> None:
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                info = os.stat(path)
                entries.append(f"{os.path.relpath(path, root)}:{info.st_mtime_ns}:{info.st_size}")
    digest.update("\n".join(sorted(entries)).encode())


def _package_stamp(name: str) -> str:
    """Where an installed package lives and when it changed, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return f"{name}:-"
    info = os.stat(spec.origin)
    return f"{name}:{spec.origin}:{info.st_mtime_ns}"


def code_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"{composite_cli.__version__}\0{sys.executable}\0{sys.version}\0".encode())
    digest.update(f"{_package_stamp('litellm')}\0{_package_stamp('llama_cpp')}\0".encode())
    _tree_stats(Path(composite_cli.__file__).parent, digest)
    return digest.hexdigest()


@dataclass(frozen=True)
class Identity:
    """What must match between a client and the worker that runs its command."""

    version: str
    code: str
    env: str

    @classmethod
    def current(cls, environ: Mapping[str, str] | None = None) -> Identity:
        return cls(composite_cli.__version__, code_hash(), environment_hash(environ))

    def mismatch(self, other: Identity) -> str | None:
        """Why `other` may not serve this one ("version", "code", "environment"), or None."""
        if self.version != other.version:
            return "version"
        if self.code != other.code:
            return "code"
        if self.env != other.env:
            return "environment"
        return None

    def to_json(self) -> dict[str, str]:
        return {"version": self.version, "code": self.code, "env": self.env}

    @classmethod
    def from_json(cls, data: object) -> Identity:
        if not isinstance(data, dict):
            return cls("", "", "")
        return cls(str(data.get("version", "")), str(data.get("code", "")), str(data.get("env", "")))
