"""Launching and talking to one REPL process (parent side, no policy decisions)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import stat
import sys
import sysconfig
import tempfile
import weakref
from typing import Any

from composite_cli.sandbox import cgroup
from composite_cli.sandbox.limits import SandboxLimits
from composite_cli.sandbox.protocol import FrameError, read_frame

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(os.path.dirname(PACKAGE_DIR))
PYTHON_FLAGS = ["-I", "-S", "-B", "-X", "utf8"]
STDERR_TAIL_BYTES = 8192
STACK_BYTES = 64 * 1024 * 1024  # the REPL's RLIMIT_STACK (deep recursion; see child.py)
CGROUP_REMOVE_TRIES = 200  # 10 ms apart: a killed process leaves its cgroup within milliseconds
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _bootstrap(module: str) -> str:
    """`-c` code that imports one sandbox module without running composite_cli/__init__.py."""
    return (
        "import json, sys, types\n"
        "root = json.loads(sys.argv[1])['package_root']\n"
        "for name in ('composite_cli', 'composite_cli.sandbox'):\n"
        "    m = types.ModuleType(name)\n"
        "    m.__path__ = [root + '/' + name.replace('.', '/')]\n"
        "    sys.modules[name] = m\n"
        f"from composite_cli.sandbox.{module} import main\n"
        "main(sys.argv)\n"
    )


def python_executable() -> str:
    """The base interpreter (not a venv launcher): its stdlib is all the REPL may import."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def child_environment(workdir: str) -> dict[str, str]:
    """The whole environment of the REPL: a fixed whitelist, nothing inherited (no keys)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _existing(paths: list[str]) -> list[str]:
    return [p for p in dict.fromkeys(paths) if p and os.path.exists(p)]


def _base_paths() -> dict[str, str]:
    """sysconfig paths of the base interpreter (not of a virtual environment)."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    return sysconfig.get_paths(
        vars={**base, "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
    )


def package_dirs() -> list[str]:
    """Every site-packages / dist-packages directory the REPL must not read (base, venv, system)."""
    found = []
    for paths in (sysconfig.get_paths(), _base_paths()):
        found += [paths["purelib"], paths["platlib"]]
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/usr/local"]):
        for pattern in (
            "lib*/python3*/site-packages",
            "lib*/python3*/dist-packages",
            "lib*/python3/dist-packages",
        ):
            found += glob.glob(os.path.join(prefix, pattern))
    return _existing([os.path.realpath(p) for p in found])


def repl_cgroup(limits: SandboxLimits) -> tuple[cgroup.ReplCgroup | None, str]:
    """A cgroup for one REPL with its limits set, and the report; (None, why) where there is none."""
    try:
        made = cgroup.create(limits.memory_mb, limits.max_pids)
    except cgroup.CgroupUnavailable as exc:
        return None, f"unavailable ({exc})"
    return made, made.report()


def _confine_config(
    limits: SandboxLimits,
    workdir: str,
    fd: int,
    python: str,
    repl_group: cgroup.ReplCgroup | None = None,
    cgroup_state: str = "unavailable (not requested)",
) -> dict[str, Any]:
    paths = _base_paths()
    stdlib = [paths["stdlib"], paths["platstdlib"]]
    extension_dir = sysconfig.get_config_var("DESTSHARED") or os.path.join(paths["platstdlib"], "lib-dynload")
    libdir = sysconfig.get_config_var("LIBDIR") or ""  # libpython, where the interpreter is shared
    devices = ["/dev/zero", "/dev/urandom", "/dev/random"]
    system_libs = ["/lib", "/lib32", "/lib64", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/local/lib"]
    hidden = package_dirs()
    stage2 = {
        "package_root": PACKAGE_ROOT,
        "workdir": workdir,
        "read_dirs": _existing([*stdlib, extension_dir, "/usr/share/zoneinfo"]),
        "read_files": _existing([*devices, "/etc/localtime"]),
        "hidden_dirs": hidden,
        "extension_dir": extension_dir,
        "max_output_chars": limits.max_output_chars,
        "max_error_chars": limits.max_error_chars,
        "max_variable_chars": limits.max_variable_chars,
    }
    mb = 1024 * 1024
    return {
        "package_root": PACKAGE_ROOT,
        "parent_pid": os.getpid(),
        "fd": fd,
        "python": python,
        "python_flags": PYTHON_FLAGS,
        "bootstrap": _bootstrap("child"),
        "workdir": workdir,
        "disk": {"mb": limits.max_disk_mb, "files": limits.max_files, "file_mb": limits.max_file_mb},
        "cgroup": {"join": repl_group.join_files if repl_group else [], "report": cgroup_state},
        "landlock_read": _existing(
            [
                *stdlib,
                extension_dir,
                libdir,
                PACKAGE_DIR,
                "/usr/share/zoneinfo",
                "/etc/ld.so.cache",
                "/etc/localtime",
                *devices,
            ]
        ),
        "landlock_exec": _existing([python, *system_libs]),
        "landlock_hidden": hidden,
        "landlock_rw": [workdir, "/dev/null"],
        "rlimits": {
            "cpu": int(limits.process_cpu_s),
            "as": limits.memory_mb * mb,
            "fsize": limits.max_file_mb * mb,
            "nofile": limits.max_open_files,
            "nproc": limits.max_processes,
            "stack": STACK_BYTES,
        },
        "stage2": stage2,
    }


class ChildProcess:
    """One running REPL process: its channel, its stderr tail, its temporary directory."""

    def __init__(self, limits: SandboxLimits, tmp_root: str | None):
        self.limits = limits
        self.tmp_root = tmp_root
        self.directory = ""  # the working directory as the parent created it
        self.process: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.frames: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue(maxsize=8)
        self.stderr_tail = bytearray()
        self.tasks: list[asyncio.Task[None]] = []
        self.killed_by_us = False
        self.disposed = False
        self.cgroup: cgroup.ReplCgroup | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def workdir(self) -> str:
        """The REPL's working directory as the parent can read it.

        Where the REPL has its own tmpfs (a private mount), the parent's path is the empty
        directory under the mount: the REPL's files are seen through /proc/<pid>/root.
        """
        if self.process is not None and self.process.returncode is None and self.directory:
            view = f"/proc/{self.process.pid}/root{self.directory}"
            with contextlib.suppress(OSError):
                if os.path.isdir(view) and os.stat(view).st_dev != os.stat(self.directory).st_dev:
                    return view
        return self.directory

    async def launch(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="composite-rlm-", dir=self.tmp_root)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        python = python_executable()
        self.cgroup, cgroup_state = repl_cgroup(self.limits)
        config = _confine_config(
            self.limits, self.directory, child_sock.fileno(), python, self.cgroup, cgroup_state
        )
        try:
            self.process = await asyncio.create_subprocess_exec(
                python,
                *PYTHON_FLAGS,
                "-c",
                _bootstrap("confine"),
                json.dumps(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment(self.directory),
                cwd=self.directory,
                pass_fds=(child_sock.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            parent_sock.close()
            if self.cgroup is not None:
                self.cgroup.remove()
            raise
        finally:
            child_sock.close()
        # If the owner forgets close() (or the interpreter exits), still kill and clean up.
        self._finalizer = weakref.finalize(
            self, _emergency_cleanup, self.process, self.directory, self.cgroup
        )
        reader, self.writer = await asyncio.open_unix_connection(sock=parent_sock)
        self.tasks = [
            asyncio.create_task(self._read_frames(reader)),
            asyncio.create_task(self._drain_stderr()),
        ]

    async def _read_frames(self, reader: asyncio.StreamReader) -> None:
        max_bytes = self.limits.max_message_mb * 1024 * 1024
        try:
            while True:
                frame = await read_frame(reader, max_bytes)
                await self.frames.put(frame)
                if frame is None:
                    return
        except (FrameError, OSError) as exc:
            await self.frames.put(exc)

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.stderr_tail += chunk
            del self.stderr_tail[:-STDERR_TAIL_BYTES]

    async def next_frame(self, timeout: float) -> dict[str, Any] | BaseException | bool | None:
        """The next frame; None at end of stream; an exception for a bad frame; False on timeout."""
        try:
            return await asyncio.wait_for(self.frames.get(), timeout)
        except TimeoutError:
            return False

    async def send(self, frame: bytes, timeout: float) -> bool:
        """Write one frame; False if the child did not take it in time or the channel broke."""
        assert self.writer is not None
        try:
            self.writer.write(frame)
            await asyncio.wait_for(self.writer.drain(), max(timeout, 0.1))
        except (TimeoutError, OSError):
            return False
        return True

    def cpu_seconds(self) -> float:
        """User+system CPU time of the process so far (0 where /proc is unavailable)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / _CLK_TCK
        except (OSError, IndexError, ValueError):
            return 0.0

    def interrupt(self) -> None:
        self._signal(signal.SIGINT, group=False)

    def kill(self) -> None:
        self.killed_by_us = True
        self._signal(signal.SIGKILL, group=True)

    def _signal(self, sig: int, *, group: bool) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.process.pid, sig)
            else:
                os.kill(self.process.pid, sig)

    async def returncode(self, timeout: float = 2.0) -> int | None:
        """The exit status once the process is gone (waits briefly), else None."""
        if self.process is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.process.wait(), timeout)
        return None

    async def dispose(self) -> None:
        """Kill the process group, reap it, close the channel and delete the directory (once)."""
        if self.disposed:
            return
        self.disposed = True
        self.kill()
        if self.process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError, FrameError):
                await task
        if self.directory:
            remove_tree(self.directory)
        await self._remove_cgroup()
        if self._finalizer is not None:
            self._finalizer.detach()

    async def _remove_cgroup(self) -> None:
        """Remove the REPL's cgroup once its processes are gone (they leave it shortly after)."""
        if self.cgroup is None:
            return
        for _ in range(CGROUP_REMOVE_TRIES):
            if self.cgroup.remove(0.0):
                return
            await asyncio.sleep(0.01)
        self.cgroup.remove(1.0)

    def out_of_memory(self) -> bool:
        """Whether the kernel killed a process in the REPL's cgroup for going over its memory."""
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def stderr_text(self) -> str:
        return self.stderr_tail.decode("utf-8", "replace").strip()


def _emergency_cleanup(
    process: asyncio.subprocess.Process, workdir: str, repl_group: cgroup.ReplCgroup | None
) -> None:
    if process.returncode is None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    remove_tree(workdir)
    if repl_group is not None:
        repl_group.remove()


def remove_tree(path: str) -> None:
    """Delete a directory the REPL may have made unwritable (chmod 000 inside it, etc.)."""

    def fix_and_retry(func: Any, target: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, stat.S_IRWXU)
        with contextlib.suppress(OSError):
            func(target)

    shutil.rmtree(path, onerror=fix_and_retry)
    if os.path.exists(path):
        shutil.rmtree(path, ignore_errors=True)
