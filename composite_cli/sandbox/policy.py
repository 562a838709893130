"""The audit hook of the REPL process (PEP 578): friendly errors for what model code may not do.

`install()` is called by `child.py` before any model code runs; audit hooks cannot be removed.
The hook refuses:

- starting programs: subprocess, os.system, os.exec*, os.spawn*, os.posix_spawn, os.fork(pty),
  and a re-import of `_posixsubprocess` (whose `fork_exec` raises no audit event; `child.py`
  replaces it before the hook is installed);
- networking: every `socket.*` event (creating sockets included) and the url/http/ftp/smtp/...
  client events;
- writing, creating, renaming or deleting files outside the REPL's temporary directory (symlinks
  are resolved first); reading files outside that directory, the standard library, a few devices
  and the time-zone database; anything under a `site-packages` or `dist-packages` directory;
- ctypes, cffi, sqlite3 (its ATTACH writes files the hook cannot see), sub-interpreters (they
  have no hooks), CPython's test modules, and extension modules from outside the standard
  library's lib-dynload directory;
- code-object construction and marshal loading (the usual ways to corrupt the interpreter), gc
  object enumeration, new audit hooks, setrlimit/prlimit, signals to other processes.

A refused action raises PermissionError (ImportError for imports) in the model's code.

This layer gives clear errors; it is not the boundary (the kernel layers applied by `confine.py`
are). Still, it is built so that model code cannot switch it off from Python:

- the hook is a function that nothing in Python refers to once installed (not this module, not a
  frame, not an object: `child.py` drops this module from `sys.modules` and keeps no reference);
  CPython keeps it in the interpreter state, where Python code cannot reach it, and does not
  trace it (so `sys.settrace` cannot rewrite its variables);
- at call time it reads no global and no builtin name (`test_sandbox_escapes` checks the
  bytecode): its tables are immutable (tuples, frozensets, read-only mappings) and every function
  it calls is bound as a default argument when it is built, so rebinding `builtins.isinstance`,
  `os.path.realpath` or this module's globals changes nothing; paths are resolved with the
  interpreter's C functions (`posix.lstat`, `posix.readlink`), not with `os.path`;
- its helper functions can be seen in the frames of a traceback it raised, but changing their
  `__code__` or `__defaults__` is itself an audit event, which it refuses;
- it calls no method of an object model code made: event names, paths and modes must be exact
  `str`/`bytes`/`int`/pathlib objects, or the action is refused; for a pathlib path it calls
  pathlib's own `__str__`, after checking that nothing in pathlib's path classes was changed.

What Python cannot prevent: pathlib's internals below its methods (its flavour object) can be
changed so that a pathlib path reads differently to the hook and to the call (str paths cannot);
a memory-corruption bug in CPython or an extension module lets code
write anywhere in its own process, hook included; built-in modules can be re-created through
`importlib` internals without an import event; functions without audit events
(`os.setpriority`, `os.sched_setaffinity`, `os.pidfd_open`, ...) reach the kernel directly. That
is what the kernel layers are for: `tests/test_sandbox_escapes.py` runs every escape both with
and without this hook.
"""

from __future__ import annotations

import _stat
import os
import pathlib
import posix
import sys
import types
from collections.abc import Callable
from typing import Any

AuditHook = Callable[[str, tuple[Any, ...]], None]

# Whole event families refused (the part of the event name before the first dot).
DENIED_FAMILIES = types.MappingProxyType(
    {
        "socket": "network access",
        "subprocess": "starting programs",
        "ctypes": "native code",
        "sqlite3": "sqlite3",
        "winreg": "the Windows registry",
        "_winapi": "native code",
        "msvcrt": "native code",
    }
)
DENIED_EVENTS = types.MappingProxyType(
    {
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
)
# Top-level modules that may not be imported at all (`_posixsubprocess` is imported before the
# hook, so only a re-import, which would bring back the real fork_exec, is refused).
DENIED_MODULES = frozenset(
    {
        "ctypes", "_ctypes", "_ctypes_test", "cffi", "_cffi_backend", "sqlite3", "_sqlite3",
        "_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_testcapi", "_testinternalcapi",
        "_testbuffer", "_testclinic", "_testimportmultiple", "_testmultiphase", "_testsinglephase",
        "_xxtestfuzz", "xxlimited", "xxlimited_35", "xxsubtype", "_tkinter", "readline", "_curses",
        "_curses_panel", "_posixshmem", "_multiprocessing", "_dbm", "_gdbm", "spwd", "nis", "syslog",
        "ossaudiodev", "_posixsubprocess",
    }
)  # fmt: skip
# Events whose arguments are paths: event -> (positions read, positions written, dir_fd positions).
PATH_EVENTS = types.MappingProxyType(
    {
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
)
# Directory names whose contents are never readable: installed third-party packages.
HIDDEN_NAMES = ("/site-packages/", "/dist-packages/")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_MAX_SYMLINKS = 40

# The helpers below take everything they use as default arguments, bound now: at call time they
# look up no global or builtin name (see the module docstring).


# pathlib's path classes: `_path_text` runs pathlib's own `__str__`, so it first checks that model code
# has changed nothing in them (setting a class attribute raises no audit event in CPython), not a
# method, not a property, not a slot. Their whole class dicts are compared, so this holds whatever
# names a Python version's pathlib uses.
_PATHLIB_CLASSES = (pathlib.PurePath, pathlib.PurePosixPath, pathlib.Path, pathlib.PosixPath)
_class_dict = type.__dict__["__dict__"].__get__


def _pathlib_state(
    _classes: tuple[type, ...] = _PATHLIB_CLASSES,
    _class_dict: Any = _class_dict,
    _items: Any = types.MappingProxyType.items,
    _extend: Any = list.extend,
    _tuple: Any = tuple,
) -> tuple[Any, ...]:
    """Every (name, value) of pathlib's path classes, in order."""
    state: list[Any] = []
    for c in _classes:
        _extend(state, _items(_class_dict(c)))
    return _tuple(state)


def _path_text(
    path: Any,
    _type: Any = type,
    _str: Any = str,
    _bytes: Any = bytes,
    _decode: Any = bytes.decode,
    _safe: tuple[Any, ...] = (pathlib.PurePosixPath, pathlib.PosixPath),
    _str_of: Any = pathlib.PurePath.__str__,
    _pathlib_state: Any = _pathlib_state,
    _original: tuple[Any, ...] = _pathlib_state(),
    _len: Any = len,
    _range: Any = range,
    _PermissionError: Any = PermissionError,
) -> str:
    """The path as a str, without running code of the path object (it could answer differently)."""
    if path is None:
        return "."
    kind = _type(path)
    if kind is _str:
        return path
    if kind is _bytes:
        return _decode(path, "utf-8", "surrogateescape")
    if kind is _safe[0] or kind is _safe[1]:
        now = _pathlib_state()
        if _len(now) != _len(_original):
            raise _PermissionError("sandbox: pathlib was modified; pass paths as str")
        for i in _range(_len(now)):
            if now[i][0] is not _original[i][0] or now[i][1] is not _original[i][1]:
                raise _PermissionError("sandbox: pathlib was modified; pass paths as str")
        text = _str_of(path)  # pathlib's own __str__, the one the call itself will use
        if _type(text) is _str:
            return text
    raise _PermissionError("sandbox: paths must be str, bytes or pathlib paths")


def _resolve(
    path: str,
    _lstat: Any = posix.lstat,
    _readlink: Any = posix.readlink,
    _getcwd: Any = posix.getcwd,
    _islink: Any = _stat.S_ISLNK,
    _errors: tuple[type[BaseException], ...] = (OSError, ValueError),
    _PermissionError: Any = PermissionError,
    _max_links: int = _MAX_SYMLINKS,
) -> str:
    """os.path.realpath(path), written with the interpreter's C functions only."""
    if not path.startswith("/"):
        path = _getcwd() + "/" + path
    pending = path.split("/")
    pending.reverse()
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "" or part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        done.append(part)
        candidate = "/" + "/".join(done)
        try:
            mode = _lstat(candidate).st_mode
            if not _islink(mode):
                continue
            target = _readlink(candidate)
        except _errors:
            continue  # does not exist (yet): kept as written
        links += 1
        if links > _max_links:
            raise _PermissionError(f"sandbox: too many symbolic links in {path!r}")
        done.pop()
        if target.startswith("/"):
            done.clear()
        more = target.split("/")
        more.reverse()
        pending.extend(more)
    return "/" + "/".join(done)


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        if path == root or path.startswith(root + "/"):
            return True
    return False


def _require_writable(
    text: str,
    workdir: str,
    write_files: frozenset[str],
    _resolve: Any = _resolve,
    _inside: Any = _inside,
    _PermissionError: Any = PermissionError,
) -> None:
    real = _resolve(text)
    if real in write_files or _inside(real, (workdir,)):
        return
    raise _PermissionError(f"sandbox: writing outside the working directory is not allowed ({text!r})")


def _require_readable(
    text: str,
    read_roots: tuple[str, ...],
    read_files: frozenset[str],
    hidden_roots: tuple[str, ...],
    _resolve: Any = _resolve,
    _inside: Any = _inside,
    _hidden_names: tuple[str, ...] = HIDDEN_NAMES,
    _PermissionError: Any = PermissionError,
) -> None:
    real = _resolve(text)
    if real in read_files:
        return
    if _inside(real, read_roots) and not _inside(real, hidden_roots):
        slashed = real + "/"
        for name in _hidden_names:
            if name in slashed:
                break
        else:
            return
    raise _PermissionError(f"sandbox: reading this file is not allowed ({text!r})")


def _check_import(
    args: tuple[Any, ...],
    extension_dir: str,
    _type: Any = type,
    _str: Any = str,
    _denied: frozenset[str] = DENIED_MODULES,
    _path_text: Any = _path_text,
    _resolve: Any = _resolve,
    _ImportError: Any = ImportError,
) -> None:
    name, filename = args[0], args[1]
    if _type(name) is not _str:
        raise _ImportError("sandbox: module names must be str")
    if name.partition(".")[0] in _denied or name.rpartition(".")[2] in _denied:
        raise _ImportError(f"sandbox: importing {name} is not allowed", name=name)
    if filename is None:
        return
    # The second event of an extension module names its shared library.
    real = _resolve(_path_text(filename))
    if real.rpartition("/")[0] != extension_dir:
        raise _ImportError(
            f"sandbox: only standard-library extension modules may be loaded ({name})", name=name
        )


def _check_open(
    args: tuple[Any, ...],
    workdir: str,
    write_files: frozenset[str],
    read_roots: tuple[str, ...],
    read_files: frozenset[str],
    hidden_roots: tuple[str, ...],
    _type: Any = type,
    _int: Any = int,
    _str: Any = str,
    _write_flags: int = _WRITE_FLAGS,
    _path_text: Any = _path_text,
    _require_writable: Any = _require_writable,
    _require_readable: Any = _require_readable,
    _PermissionError: Any = PermissionError,
) -> None:
    path, mode, flags = args[0], args[1], args[2]
    if _type(path) is _int:
        return  # an already open descriptor
    write = (flags & _write_flags) != 0 if _type(flags) is _int else True
    if mode is not None:
        if _type(mode) is not _str:
            write = True
        else:
            for c in "wax+":
                if c in mode:
                    write = True
    text = _path_text(path)
    if mode is None and not text.startswith("/"):
        # os.open() may be relative to a dir_fd that the audit event does not show.
        raise _PermissionError(f"sandbox: os.open() needs an absolute path here (got {text!r})")
    if write:
        _require_writable(text, workdir, write_files)
    else:
        _require_readable(text, read_roots, read_files, hidden_roots)


def _check_paths(
    event: str,
    args: tuple[Any, ...],
    spec: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    workdir: str,
    write_files: frozenset[str],
    read_roots: tuple[str, ...],
    read_files: frozenset[str],
    hidden_roots: tuple[str, ...],
    _type: Any = type,
    _int: Any = int,
    _len: Any = len,
    _path_text: Any = _path_text,
    _require_writable: Any = _require_writable,
    _require_readable: Any = _require_readable,
    _PermissionError: Any = PermissionError,
) -> None:
    read, written, dir_fds = spec
    n = _len(args)
    for i in dir_fds:
        if i < n and args[i] is not None and not (_type(args[i]) is _int and args[i] == -1):
            raise _PermissionError(f"sandbox: dir_fd is not allowed ({event})")
    for i in read:
        if i < n and _type(args[i]) is not _int:
            _require_readable(_path_text(args[i]), read_roots, read_files, hidden_roots)
    for i in written:
        if i < n and _type(args[i]) is not _int:
            _require_writable(_path_text(args[i]), workdir, write_files)


_HELPERS = (
    _pathlib_state,
    _path_text,
    _resolve,
    _inside,
    _require_writable,
    _require_readable,
    _check_import,
    _check_open,
    _check_paths,
)


def build_hook(
    *,
    workdir: str,
    read_dirs: list[str],
    read_files: list[str],
    hidden_dirs: list[str],
    extension_dir: str,
) -> AuditHook:
    """The audit hook for a REPL with these directories (see the module docstring)."""
    real = os.path.realpath
    work = real(workdir)
    # `hook` reads only its arguments and these defaults: no globals, no builtins, no closure.

    def hook(
        event: str,
        args: tuple[Any, ...],
        _workdir: str = work,
        _read_roots: tuple[str, ...] = (*(real(d) for d in read_dirs), work),
        _read_files: frozenset[str] = frozenset(real(f) for f in read_files),
        _hidden_roots: tuple[str, ...] = tuple(real(d) for d in hidden_dirs),
        _extension_dir: str = real(extension_dir),
        _write_files: frozenset[str] = frozenset({"/dev/null"}),
        _pid: int = os.getpid(),
        _coroutine_code: Any = types.coroutine.__code__,
        _protected: frozenset[int] = frozenset(),  # replaced below, once `hook` exists
        _path_events: Any = PATH_EVENTS,
        _denied_events: Any = DENIED_EVENTS,
        _denied_families: Any = DENIED_FAMILIES,
        _check_open: Any = _check_open,
        _check_paths: Any = _check_paths,
        _check_import: Any = _check_import,
        _getframe: Any = sys._getframe,
        _id: Any = id,
        _type: Any = type,
        _str: Any = str,
        _int: Any = int,
        _PermissionError: Any = PermissionError,
    ) -> None:
        if _type(event) is not _str:
            raise _PermissionError("sandbox: audit event names must be str")
        if event == "open":
            _check_open(args, _workdir, _write_files, _read_roots, _read_files, _hidden_roots)
        elif event in _path_events:
            spec = _path_events[event]
            _check_paths(event, args, spec, _workdir, _write_files, _read_roots, _read_files, _hidden_roots)
        elif event == "import":
            _check_import(args, _extension_dir)
        elif event == "object.__setattr__":
            if _id(args[0]) in _protected:
                raise _PermissionError("sandbox: changing the sandbox's own functions is not allowed")
        elif event in _denied_events:
            raise _PermissionError(f"sandbox: {_denied_events[event]} is not allowed ({event})")
        elif event == "code.__new__":
            if _getframe(1).f_code is not _coroutine_code:
                raise _PermissionError("sandbox: building code objects is not allowed (code.__new__)")
        elif event == "os.kill":
            if _type(args[0]) is not _int or args[0] != _pid:
                raise _PermissionError("sandbox: sending signals to other processes is not allowed")
        else:
            family = _denied_families.get(event.partition(".")[0])
            if family is not None:
                raise _PermissionError(f"sandbox: {family} is not allowed ({event})")

    defaults = list(hook.__defaults__ or ())
    names = hook.__code__.co_varnames[2 : 2 + len(defaults)]
    defaults[names.index("_protected")] = frozenset(id(f) for f in (hook, *_HELPERS))
    hook.__defaults__ = tuple(defaults)
    return hook


def install(**config: Any) -> None:
    """Build the hook for `config` (see build_hook) and add it; nothing keeps a reference to it."""
    sys.addaudithook(build_hook(**config))
