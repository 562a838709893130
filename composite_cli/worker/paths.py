"""Where the worker's socket, lock and log live, and the checks that keep them private.

One worker per user: `$COMPOSITE_WORKER_DIR`, else `$XDG_RUNTIME_DIR/composite`, else
`/tmp/composite-<uid>`. The directory must be the user's own and closed to everyone else (0700);
the socket inside it is 0600, and the worker also checks each peer's uid (SO_PEERCRED).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from composite_cli.errors import CompositeError

# sockaddr_un.sun_path is 108 bytes on Linux (104 on the BSDs), including the final NUL.
_MAX_SOCKET_PATH = 100


class WorkerUnavailable(CompositeError):
    """The worker cannot be used here (platform, directory permissions, start-up failure)."""


@dataclass(frozen=True)
class WorkerPaths:
    """The files of one user's worker."""

    dir: Path

    @property
    def socket(self) -> Path:
        return self.dir / "worker.sock"

    @property
    def lock(self) -> Path:
        return self.dir / "start.lock"

    @property
    def log(self) -> Path:
        return self.dir / "worker.log"


def supported() -> bool:
    """Unix sockets with peer credentials (Linux)."""
    return hasattr(socket, "AF_UNIX") and hasattr(socket, "SO_PEERCRED")


def worker_paths(environ: Mapping[str, str] | None = None) -> WorkerPaths:
    """This user's worker files (the directory is not created here)."""
    env = os.environ if environ is None else environ
    explicit = env.get("COMPOSITE_WORKER_DIR")
    if explicit:
        base = Path(explicit)
    elif env.get("XDG_RUNTIME_DIR"):
        base = Path(env["XDG_RUNTIME_DIR"]) / "composite"
    else:
        base = Path("/tmp") / f"composite-{os.getuid()}"  # noqa: S108 - checked private below
    return WorkerPaths(base.absolute())


def ensure_private_dir(path: Path) -> None:
    """Create `path` (0700) or check that the existing one is ours and closed to others."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise WorkerUnavailable(f"cannot create the worker directory {path}: {exc.strerror}") from None
    check_private_dir(path)
    if len(str(path / "worker.sock")) > _MAX_SOCKET_PATH:
        raise WorkerUnavailable(f"the worker directory path is too long for a Unix socket: {path}")


def check_private_dir(path: Path) -> None:
    """Raise WorkerUnavailable unless `path` is a real directory owned by us with mode 0700."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise WorkerUnavailable(f"worker directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise WorkerUnavailable(f"worker directory {path} is not a directory")
    if info.st_uid != os.getuid():
        raise WorkerUnavailable(f"worker directory {path} belongs to another user")
    if info.st_mode & 0o077:
        raise WorkerUnavailable(
            f"worker directory {path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            "it must be 0700"
        )


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)
