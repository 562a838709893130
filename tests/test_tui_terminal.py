"""`composite tui` in a real terminal (tmux): run `direct` on the embedded model, see the answer
on screen, and find the run in the trace database."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_model
REPO = Path(__file__).resolve().parent.parent


def _command() -> list[str]:
    """`composite tui` once it is registered in the CLI, else the module itself."""
    from composite_cli.cli.main import app

    names = {c.name for c in app.registered_commands}
    composite = Path(sys.executable).with_name("composite")
    if "tui" in names and composite.exists():
        return [str(composite), "tui"]
    return [sys.executable, "-m", "composite_cli.cli.tui"]


def _tmux(socket: str, *args: str) -> str:
    result = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=30)
    return result.stdout


def _wait(condition, timeout: float, what: str, screen=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen:\n{screen()}")
        time.sleep(0.5)


def _run_row(db: Path) -> tuple | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "select mode, source, status, output from runs where status != 'running'"
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _start_tui(socket: str, home: Path, *options: str) -> None:
    """`composite tui OPTIONS` in a new tmux session `tui` (100x30) on its own server `socket`."""
    env = {
        k: os.environ[k]
        for k in ("HOME", "XDG_CONFIG_HOME", "PATH", "LITELLM_LOCAL_MODEL_COST_MAP")
        if k in os.environ
    }
    env.update(TERM="xterm-256color", COLORTERM="truecolor", PYTHONPATH=str(REPO))
    command = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " "
    command += shlex.join([*_command(), *options])
    _tmux(socket, "new-session", "-d", "-s", "tui", "-x", "100", "-y", "30", "-c", str(home), command)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_the_tui_answers_on_the_embedded_model_in_a_real_terminal(isolated_home: Path):
    db = isolated_home / "traces.db"
    socket = f"composite-tui-test-{os.getpid()}"
    _start_tui(
        socket, isolated_home, "--profile", "local", "--mode", "direct", "--max-tokens", "16", "--db", str(db)
    )

    def screen() -> str:
        return _tmux(socket, "capture-pane", "-p", "-t", "tui")

    try:
        _wait(lambda: "Type a prompt" in screen(), 90, "the Run screen", screen)
        prompt = "Say hello in one short sentence."
        _tmux(socket, "send-keys", "-t", "tui", "-l", prompt)
        # Wait on state, not time: ctrl+r goes once the prompt is in the box (a run asked for while
        # LiteLLM still loads is queued, so the warm-up no longer matters).
        _wait(lambda: prompt in screen(), 60, "the prompt in the box", screen)
        _tmux(socket, "send-keys", "-t", "tui", "C-r")
        _wait(lambda: _run_row(db) is not None, 300, "the run to be recorded", screen)
        mode, source, status, output = _run_row(db)
        assert (mode, source, status) == ("direct", "tui", "ok")
        assert output and output.strip()
        first_words = " ".join(output.split()[:2])
        _wait(
            lambda: "calls 1 ·" in screen() and first_words in " ".join(screen().split()),
            30,
            "the answer",
            screen,
        )
        _tmux(socket, "send-keys", "-t", "tui", "C-q")
        _wait(lambda: "tui" not in _tmux(socket, "list-sessions"), 30, "the app to exit", screen)
    finally:
        _tmux(socket, "kill-server")
