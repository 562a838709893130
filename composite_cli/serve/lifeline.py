"""Workers die with the process that supervises them (`composite serve --workers N`).

uvicorn's supervisor starts the workers and hands them the listening socket. If the supervisor is
killed with SIGKILL it cannot stop them: they would keep serving the port as orphans, and the next
`composite serve` on that port would fail with "Address already in use". So each worker asks the
kernel for SIGTERM when its parent dies (Linux `PR_SET_PDEATHSIG`; elsewhere a thread that watches
the parent id), and SIGTERM is uvicorn's graceful shutdown: the socket is closed at once, in-flight
requests get the grace period, the trace store commits.

The supervisor's pid travels in the environment (workers are fresh processes), set by `run()`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping

SUPERVISOR_ENV = "COMPOSITE_SERVE_SUPERVISOR"
_PR_SET_PDEATHSIG = 1
_WATCH_INTERVAL_S = 1.0


def _parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` when the parent exits; False where there is no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library this process already has
        zero = ctypes.c_ulong(0)
        return int(libc.prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(sig), zero, zero, zero)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(supervisor: int) -> None:
    """Without prctl: poll the parent id, and stop this worker once it has changed."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(_WATCH_INTERVAL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="composite-serve-lifeline", daemon=True).start()


def die_with_supervisor(environ: Mapping[str, str]) -> None:
    """In a worker: make sure it ends when the supervisor that started it does.

    A no-op in the single-process server (no supervisor, or we are it)."""
    raw = environ.get(SUPERVISOR_ENV, "")
    if not raw.isdigit() or int(raw) == os.getpid():
        return
    supervisor = int(raw)
    if not _parent_death_signal(signal.SIGTERM):
        _watch_parent(supervisor)
    if os.getppid() != supervisor:  # it died before the signal was asked for
        sys.exit(f"composite serve: the supervising process {supervisor} is gone; this worker stops")
