"""Keys typed while `composite tui` starts reach the prompt (issue 17 item 1), in a real terminal.

Before: the Run screen's first focused widget was Textual's default, the mode picker, until the
screen's `on_mount` moved focus to the prompt; keys read in between went to the picker, so a
prompt typed straight after launch was lost and its ctrl+r answered "Type a prompt first."
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_tui_terminal import _start_tui, _tmux, _wait


def _inputs(db: Path) -> list[str]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("select input from runs where status != 'running'")]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_prompt_typed_while_the_tui_starts_lands_in_the_prompt(isolated_home: Path):
    db = isolated_home / "traces.db"
    socket = f"composite-typeahead-{os.getpid()}"
    _start_tui(socket, isolated_home, "--profile", "dry", "--mode", "direct", "--db", str(db))

    def screen() -> str:
        return _tmux(socket, "capture-pane", "-p", "-t", "tui")

    prompt = "typed before the screen was drawn"
    try:
        # at once, before the app has started: the terminal holds the keys until the app reads them
        _tmux(socket, "send-keys", "-t", "tui", "-l", prompt)
        # in the app's prompt box (its left edge, █): not the terminal's echo of the keys before
        # the app took the terminal, where a ctrl+r would be the terminal's own "reprint"
        _wait(lambda: f"█ {prompt}" in screen(), 90, "the typed prompt in the box", screen)
        assert "Type a prompt" not in screen()
        _tmux(socket, "send-keys", "-t", "tui", "C-r")
        _wait(lambda: _inputs(db), 120, "the run to be recorded", screen)
        assert _inputs(db) == [prompt]
        _tmux(socket, "send-keys", "-t", "tui", "C-q")
        _wait(lambda: "tui" not in _tmux(socket, "list-sessions"), 30, "the app to exit", screen)
    finally:
        _tmux(socket, "kill-server")
