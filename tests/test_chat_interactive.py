"""`composite chat` with no prompt on a terminal: an interactive session that keeps the conversation."""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """
profile: dry
profiles:
  dry:
    "*": {model: openai/gpt-4o-mini, mock_response: "Paris is the answer", mock_delay: 0.01}
"""


def read_until(fd: int, needle: bytes, timeout: float = 60) -> bytes:
    buf = b""
    end = time.time() + timeout
    while needle not in buf:
        if time.time() > end:
            raise AssertionError(f"did not see {needle!r}; got {buf!r}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                buf += os.read(fd, 4096)
            except OSError:
                break
    return buf


def test_interactive_session_keeps_the_conversation(isolated_home: Path):
    (isolated_home / "composite.yaml").write_text(CONFIG, encoding="utf-8")
    exe = Path(sys.executable).with_name("composite")
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [str(exe), "chat", "-m", "direct", "-q"],
        stdin=child,
        stdout=child,
        stderr=child,
        cwd=isolated_home,
        close_fds=True,
    )
    os.close(child)
    try:
        read_until(main, b"direct> ")
        os.write(main, b"first question\n")
        read_until(main, b"Paris is the answer")
        read_until(main, b"direct> ")
        os.write(main, b"second question\n")
        read_until(main, b"Paris is the answer")
        read_until(main, b"direct> ")
        os.write(main, b"\x04")  # Ctrl-D ends the session
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    db = sqlite3.connect(isolated_home / "traces.db")
    runs = db.execute("select id, input from runs order by created_at").fetchall()
    assert [r[1] for r in runs] == ["first question", "second question"]
    request = json.loads(
        db.execute("select request_json from steps where run_id=? and kind='llm'", [runs[1][0]]).fetchone()[0]
    )
    assert request["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Paris is the answer"},
        {"role": "user", "content": "second question"},
    ]
