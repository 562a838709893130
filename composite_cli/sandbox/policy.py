"""The audit hook of the REPL process (PEP 578): what model code may not do, with clear errors.

Installed by `child.py` before any model code runs; audit hooks cannot be removed. It refuses:

- starting programs: subprocess, os.system, os.exec*, os.spawn*, os.posix_spawn, os.fork(pty);
- networking: every `socket.*` event (creating sockets included) and the url/http/ftp/smtp/...
  client events;
- writing, creating, renaming or deleting files outside the REPL's temporary directory (symlinks
  are resolved first); reading files outside that directory, the standard library, a few devices
  and the time-zone database;
- ctypes, cffi, sqlite3 (its ATTACH writes files the hook cannot see), sub-interpreters (they
  have no hooks), CPython's test modules, and extension modules from outside the standard
  library's lib-dynload directory;
- code-object construction and marshal loading (the usual ways to corrupt the interpreter), gc
  object enumeration, new audit hooks, setrlimit/prlimit, signals to other processes.

A refused action raises PermissionError (ImportError for imports) in the model's code. This layer
is pure Python inside the same process as the model's code, so it is best effort; the kernel
layers applied by `confine.py` (where available) hold even if it is bypassed.
"""

from __future__ import annotations

import os
import pathlib
import sys
import types
from typing import Any

# Whole event families refused (the part of the event name before the first dot).
_DENIED_FAMILIES = {
    "socket": "network access",
    "subprocess": "starting programs",
    "ctypes": "native code",
    "sqlite3": "sqlite3",
    "winreg": "the Windows registry",
    "_winapi": "native code",
    "msvcrt": "native code",
}
_DENIED_EVENTS = {
    "os.system": "starting programs",
    "os.exec": "starting programs",
    "os.spawn": "starting programs",
    "os.posix_spawn": "starting programs",
    "os.fork": "creating processes",
    "os.forkpty": "creating processes",
    "pty.spawn": "starting programs",
    "os.startfile": "starting programs",
    "webbrowser.open": "starting programs",
    "os.killpg": "sending signals to other processes",
    "urllib.Request": "network access",
    "http.client.connect": "network access",
    "ftplib.connect": "network access",
    "smtplib.connect": "network access",
    "poplib.connect": "network access",
    "imaplib.open": "network access",
    "nntplib.connect": "network access",
    "telnetlib.Telnet.open": "network access",
    "marshal.load": "loading marshal data",
    "marshal.loads": "loading marshal data",
    "gc.get_objects": "enumerating interpreter objects",
    "gc.get_referrers": "enumerating interpreter objects",
    "gc.get_referents": "enumerating interpreter objects",
    "sys.addaudithook": "adding audit hooks",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
    "os.add_dll_directory": "loading native libraries",
}
# Top-level modules that may not be imported at all.
DENIED_MODULES = frozenset(
    {
        "ctypes", "_ctypes", "_ctypes_test", "cffi", "_cffi_backend", "sqlite3", "_sqlite3",
        "_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_testcapi", "_testinternalcapi",
        "_testbuffer", "_testclinic", "_testimportmultiple", "_testmultiphase", "_testsinglephase",
        "_xxtestfuzz", "xxlimited", "xxlimited_35", "xxsubtype", "_tkinter", "readline", "_curses",
        "_curses_panel", "_posixshmem", "_multiprocessing", "_dbm", "_gdbm", "spwd", "nis", "syslog",
        "ossaudiodev",
    }
)  # fmt: skip
# Events whose arguments are paths: event -> (positions read, positions written, dir_fd positions).
_PATH_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "os.listdir": ((0,), (), ()),
    "os.scandir": ((0,), (), ()),
    "os.walk": ((0,), (), ()),
    "os.fwalk": ((0,), (), (3,)),
    "os.getxattr": ((0,), (), ()),
    "os.listxattr": ((0,), (), ()),
    "os.mkdir": ((), (0,), (2,)),
    "os.rmdir": ((), (0,), (1,)),
    "os.remove": ((), (0,), (1,)),
    "os.rename": ((), (0, 1), (2, 3)),
    "os.link": ((), (0, 1), (2, 3)),
    "os.symlink": ((), (1,), (2,)),
    "os.chmod": ((), (0,), (2,)),
    "os.chown": ((), (0,), (3,)),
    "os.utime": ((), (0,), (3,)),
    "os.truncate": ((), (0,), ()),
    "os.setxattr": ((), (0,), ()),
    "os.removexattr": ((), (0,), ()),
    "os.chflags": ((), (0,), ()),
    "os.lchflags": ((), (0,), ()),
    "shutil.copyfile": ((0,), (1,), ()),
    "shutil.copymode": ((0,), (1,), ()),
    "shutil.copystat": ((0,), (1,), ()),
    "shutil.copytree": ((0,), (1,), ()),
    "shutil.rmtree": ((), (0,), (1,)),
    "shutil.move": ((), (0, 1), ()),
    "shutil.chown": ((), (0,), ()),
    "shutil.make_archive": ((), (0,), ()),
    "shutil.unpack_archive": ((0,), (1,), ()),
    "tempfile.mkstemp": ((), (0,), ()),
    "tempfile.mkdtemp": ((), (0,), ()),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_SAFE_PATH_TYPES = (pathlib.PurePosixPath, pathlib.PosixPath)


class AuditPolicy:
    """Decides every audit event of the REPL process; `hook` is passed to sys.addaudithook."""

    def __init__(
        self,
        *,
        workdir: str,
        read_dirs: list[str],
        read_files: list[str],
        hidden_dirs: list[str],
        extension_dir: str,
    ):
        self.workdir = os.path.realpath(workdir)
        self.read_dirs = (*(os.path.realpath(d) for d in read_dirs), self.workdir)
        self.read_files = frozenset(os.path.realpath(f) for f in read_files)
        self.hidden_dirs = tuple(os.path.realpath(d) for d in hidden_dirs)
        self.extension_dir = os.path.realpath(extension_dir)
        self.write_files = frozenset({"/dev/null"})
        self.pid = os.getpid()
        # types.coroutine (used by asyncio) only sets a flag on a compiler-made code object.
        self.coroutine_code = types.coroutine.__code__

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        """Raise for a refused event; return for an allowed one (must be fast for the rest)."""
        if event == "open":
            self._check_open(args)
        elif event in _PATH_EVENTS:
            self._check_paths(event, args)
        elif event == "import":
            self._check_import(args)
        elif event in _DENIED_EVENTS:
            raise PermissionError(f"sandbox: {_DENIED_EVENTS[event]} is not allowed ({event})")
        elif event == "code.__new__":
            if sys._getframe(1).f_code is not self.coroutine_code:
                raise PermissionError("sandbox: building code objects is not allowed (code.__new__)")
        elif event == "os.kill":
            if args[0] != self.pid:
                raise PermissionError("sandbox: sending signals to other processes is not allowed")
        else:
            family = _DENIED_FAMILIES.get(event.partition(".")[0])
            if family is not None:
                raise PermissionError(f"sandbox: {family} is not allowed ({event})")

    # -- files ---------------------------------------------------------------------------------

    def _check_open(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = args[0], args[1], args[2]
        if isinstance(path, int) and not isinstance(path, bool):
            return  # an already open descriptor
        write = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) else True
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            write = True
        text = self._path_text(path)
        if mode is None and not os.path.isabs(text):
            # os.open() may be relative to a dir_fd that the audit event does not show.
            raise PermissionError(f"sandbox: os.open() needs an absolute path here (got {text!r})")
        if write:
            self._require_writable(text)
        else:
            self._require_readable(text)

    def _check_paths(self, event: str, args: tuple[Any, ...]) -> None:
        read, written, dir_fds = _PATH_EVENTS[event]
        for i in dir_fds:
            if i < len(args) and args[i] not in (None, -1):
                raise PermissionError(f"sandbox: dir_fd is not allowed ({event})")
        for i in read:
            if i < len(args) and not isinstance(args[i], int):
                self._require_readable(self._path_text(args[i]))
        for i in written:
            if i < len(args) and not isinstance(args[i], int):
                self._require_writable(self._path_text(args[i]))

    def _path_text(self, path: Any) -> str:
        if path is None:
            return "."
        if type(path) is str:
            return path
        if type(path) is bytes:
            return os.fsdecode(path)
        if type(path) in _SAFE_PATH_TYPES:
            return str(path)
        # Anything else could run model code (__fspath__) and answer differently than it did to
        # the operation being checked.
        raise PermissionError(
            f"sandbox: paths must be str, bytes or pathlib paths, not {type(path).__name__}"
        )

    @staticmethod
    def _inside(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == root or path.startswith(root + os.sep) for root in roots)

    def _require_writable(self, text: str) -> None:
        real = os.path.realpath(text)
        if real in self.write_files or self._inside(real, (self.workdir,)):
            return
        raise PermissionError(f"sandbox: writing outside the working directory is not allowed ({text!r})")

    def _require_readable(self, text: str) -> None:
        real = os.path.realpath(text)
        if real in self.read_files or real in self.write_files:
            return
        if self._inside(real, self.read_dirs) and not self._inside(real, self.hidden_dirs):
            return
        raise PermissionError(f"sandbox: reading this file is not allowed ({text!r})")

    # -- imports -------------------------------------------------------------------------------

    def _check_import(self, args: tuple[Any, ...]) -> None:
        name, filename = args[0], args[1]
        if not isinstance(name, str):
            raise ImportError("sandbox: bad module name")
        top = name.partition(".")[0]
        if top in DENIED_MODULES or name.rpartition(".")[2] in DENIED_MODULES:
            raise ImportError(f"sandbox: importing {name} is not allowed", name=name)
        if filename is None:
            return
        # The second event of an extension module names its shared library.
        text = self._path_text(filename)
        if os.path.dirname(os.path.realpath(text)) != self.extension_dir:
            raise ImportError(
                f"sandbox: only standard-library extension modules may be loaded ({name})", name=name
            )
