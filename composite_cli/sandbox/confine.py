"""Stage 1 of the REPL process: kernel-level confinement, then exec into the REPL (stage 2).

This runs in a fresh `python -I -S` started by the parent, before any model-written code exists.
It uses ctypes to apply what the kernel offers, in this order:

1. parent-death signal (the REPL dies with the parent), channel moved to fd 3; into the cgroup
   the parent made for this REPL (memory and task limits, `cgroup.py`), where there is one;
2. a new, empty network namespace (`unshare(CLONE_NEWNET)`; unprivileged: inside a new user
   namespace), so there is no route anywhere, loopback included;
3. `PR_SET_NO_NEW_PRIVS`;
4. Landlock: read-only access to the interpreter, its standard library, system libraries and the
   sandbox package, read-write access to the REPL's temporary directory only; no TCP bind/connect
   (ABI >= 4); no signals or abstract unix sockets outside the sandbox (ABI >= 6);
5. seccomp: sockets, fork/clone, ptrace, mount, namespaces, mknod, bpf, io_uring, keyrings,
   kernel modules and signals to other processes fail with EPERM;
6. resource limits (address space, CPU, processes, file size, open files, no core dumps);
7. every capability dropped (bounding set included).

Then it execs a new interpreter (stage 2, `child.py`), so ctypes is never loaded in the process
that runs model code. Each layer is best effort; which ones took effect is passed on to stage 2,
which reports them to the parent (`Sandbox.isolation`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import resource
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any

from composite_cli.sandbox.cgroup import join as join_cgroup
from composite_cli.sandbox.seccomp_filter import AUDIT_ARCH, build_program

CHANNEL_FD = 3

_PR_SET_PDEATHSIG = 1
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_REC, _MS_PRIVATE = 0x4000, 1 << 18
_SYS_MOUNT_SETATTR = 442  # same number on every arch
_AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1

# Landlock (include/uapi/linux/landlock.h); its syscalls have the same numbers on every arch.
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LL_EXECUTE = 1 << 0
_LL_WRITE_FILE = 1 << 1
_LL_READ_FILE = 1 << 2
_LL_READ_DIR = 1 << 3
_LL_REMOVE_DIR = 1 << 4
_LL_REMOVE_FILE = 1 << 5
_LL_MAKE_DIR = 1 << 7
_LL_MAKE_REG = 1 << 8
_LL_MAKE_SYM = 1 << 12
_LL_REFER = 1 << 13
_LL_TRUNCATE = 1 << 14
_LL_NET_BIND_TCP = 1 << 0
_LL_NET_CONNECT_TCP = 1 << 1
_LL_SCOPE_ABSTRACT_UNIX = 1 << 0
_LL_SCOPE_SIGNAL = 1 << 1


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def _syscall(libc: ctypes.CDLL, number: int, *args: Any) -> int:
    converted = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return int(libc.syscall(ctypes.c_long(number), *converted))


def _prctl(libc: ctypes.CDLL, option: int, arg2: int = 0) -> int:
    zero = ctypes.c_ulong(0)
    return int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), zero, zero, zero))


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_namespaces(libc: ctypes.CDLL) -> tuple[str, bool]:
    """Move into new network and mount namespaces; returns (how, whether mounts are private)."""
    uid, gid = os.getuid(), os.getgid()
    attempts = (
        (_CLONE_NEWNET | _CLONE_NEWNS, "network namespace"),
        (_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS, "user + network namespace"),
        (_CLONE_NEWNET, "network namespace"),
        (_CLONE_NEWUSER | _CLONE_NEWNET, "user + network namespace"),
    )
    for flags, how in attempts:
        if libc.unshare(flags) == 0:
            if flags & _CLONE_NEWUSER:
                _map_own_ids(uid, gid)
            return how, bool(flags & _CLONE_NEWNS)
    err = ctypes.get_errno()
    raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def _map_own_ids(uid: int, gid: int) -> None:
    """Map our own uid/gid into a new user namespace (files we create keep their owner)."""
    for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def private_tmpfs(libc: ctypes.CDLL, workdir: str, size_mb: int, max_files: int) -> tuple[str, bool]:
    """Mount a size- and inode-limited tmpfs over the working directory, seen only by the REPL.

    Returns (how, whether every other mount could be made read-only).
    """
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount(/, MS_PRIVATE)")
    # Every other mount read-only: Landlock has no right for chmod, chown or utime, so this is
    # what stops them on files outside the directory (as root, every file is "ours").
    attr = ctypes.create_string_buffer(struct.pack("=QQQQ", _MOUNT_ATTR_RDONLY, 0, 0, 0), 32)
    read_only = _syscall(libc, _SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE, attr, 32) == 0
    options = f"size={size_mb}m,nr_inodes={max_files},mode=0700".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(libc.mount(b"tmpfs", os.fsencode(workdir), b"tmpfs", flags, options), f"mount(tmpfs on {workdir})")
    os.chdir(workdir)  # the old working directory is the directory under the mount
    rest = "everything else read-only" if read_only else "the rest not read-only (mount_setattr failed)"
    return f"private tmpfs ({size_mb} MiB, {max_files} files); {rest}", read_only


def readable_roots(roots: list[str], hidden: list[str]) -> tuple[list[str], list[str]]:
    """`roots` with every `hidden` directory cut out (Landlock can only grant, not subtract).

    A root that contains a hidden directory is replaced by its entries, recursively along the
    way to the hidden one, so the grant covers everything else under it. Returns (the granted
    paths, the directories on the way, which may only be listed: names but no contents).
    """
    holes = {os.path.realpath(h) for h in hidden}
    out: list[str] = []
    listed: list[str] = []

    def visit(path: str, depth: int) -> None:
        real = os.path.realpath(path)
        if real in holes:
            return
        if depth > 8 or not any(h.startswith(real.rstrip("/") + "/") for h in holes):
            out.append(real)
            return
        try:
            entries = sorted(os.listdir(real))
        except OSError:
            return
        listed.append(real)
        for name in entries:
            visit(os.path.join(real, name), depth + 1)

    for root in roots:
        if os.path.exists(root):
            visit(root, 0)
    return list(dict.fromkeys(out)), list(dict.fromkeys(listed))


def _landlock_abi(libc: ctypes.CDLL) -> int:
    abi = _syscall(libc, _SYS_LANDLOCK_CREATE_RULESET, None, 0, 1)
    return int(abi) if abi > 0 else 0


def landlock(
    libc: ctypes.CDLL,
    read_paths: list[str],
    exec_paths: list[str],
    rw_paths: list[str],
    list_paths: list[str],
) -> str:
    """Restrict file access (and TCP, signals, abstract sockets where the ABI allows) for good."""
    abi = _landlock_abi(libc)
    if abi < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available in this kernel")
    handled_fs = (1 << 13) - 1
    if abi >= 2:
        handled_fs |= _LL_REFER
    if abi >= 3:
        handled_fs |= _LL_TRUNCATE
    if abi >= 5:
        handled_fs |= 1 << 15  # IOCTL_DEV
    handled_net = _LL_NET_BIND_TCP | _LL_NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _LL_SCOPE_ABSTRACT_UNIX | _LL_SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("=Q", handled_fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall(libc, _SYS_LANDLOCK_CREATE_RULESET, buf, len(attr), 0)
    _check(ruleset, "landlock_create_ruleset")
    read_dir = _LL_READ_FILE | _LL_READ_DIR
    write = _LL_WRITE_FILE | _LL_REMOVE_DIR | _LL_REMOVE_FILE | _LL_MAKE_DIR | _LL_MAKE_REG | _LL_MAKE_SYM
    if abi >= 2:
        write |= _LL_REFER
    if abi >= 3:
        write |= _LL_TRUNCATE
    try:
        for paths, access in (
            (list_paths, _LL_READ_DIR),
            (read_paths, read_dir),
            (exec_paths, read_dir | _LL_EXECUTE),
            (rw_paths, read_dir | write),
        ):
            for path in paths:
                _landlock_add_path(libc, int(ruleset), path, access)
        _check(_syscall(libc, _SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(int(ruleset))
    extras = [name for name, on in (("tcp", handled_net), ("signals", scoped)) if on]
    return f"landlock ABI {abi}" + (f" (files, {', '.join(extras)})" if extras else " (files)")


def _landlock_add_path(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist needs no rule
    try:
        if not os.path.isdir(path):
            # Rules on files may only grant file rights.
            access &= _LL_EXECUTE | _LL_WRITE_FILE | _LL_READ_FILE | _LL_TRUNCATE
        attr = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
        _check(_syscall(libc, _SYS_LANDLOCK_ADD_RULE, ruleset, 1, attr, 0), f"landlock_add_rule({path})")
    finally:
        os.close(fd)


def seccomp(libc: ctypes.CDLL, *, metadata: bool) -> str:
    """Install the syscall filter (needs no_new_privs)."""
    arch = platform.machine()
    if arch not in AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp filter for architecture {arch}")
    program = build_program(arch, os.getpid(), metadata=metadata)
    filters = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(filters))
    zero = ctypes.c_ulong(0)
    result = libc.prctl(ctypes.c_int(_PR_SET_SECCOMP), ctypes.c_ulong(2), ctypes.byref(fprog), zero, zero)
    _check(result, "prctl(PR_SET_SECCOMP)")
    return f"seccomp allow list ({arch}; signals, limits, scheduling: own process only)"


def set_rlimits(limits: dict[str, int]) -> None:
    """Apply the resource limits (soft = hard, except CPU which warns with SIGXCPU first)."""
    cpu = limits["cpu"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    for name, value in (
        ("RLIMIT_AS", limits["as"]),
        ("RLIMIT_FSIZE", limits["fsize"]),
        ("RLIMIT_NOFILE", limits["nofile"]),
        ("RLIMIT_NPROC", limits["nproc"]),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))
    # A larger stack for deep recursion (stage 2 sizes its recursion limit from it); the hard
    # limit can only be raised with privileges, so otherwise stay within it.
    stack = limits["stack"]
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if hard != resource.RLIM_INFINITY and hard < stack:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_STACK, (stack, stack))
        stack = min(stack, resource.getrlimit(resource.RLIMIT_STACK)[1])
    resource.setrlimit(resource.RLIMIT_STACK, (stack, stack))


def drop_capabilities(libc: ctypes.CDLL) -> str:
    """Drop the bounding set and every effective/permitted/inheritable capability."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except OSError:
        last = 63
    for cap in range(last + 1):
        _prctl(libc, _PR_CAPBSET_DROP, cap)  # fails harmlessly unprivileged
    header = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0), 8)
    data = ctypes.create_string_buffer(bytes(24), 24)
    _check(libc.capset(header, data), "capset")
    return "capabilities dropped"


def _apply(layers: dict[str, str], name: str, step: Callable[[], str]) -> None:
    try:
        layers[name] = step()
    except Exception as exc:  # noqa: BLE001 - each layer is best effort; the failure is reported
        layers[name] = f"unavailable: {exc}"


def main(argv: list[str]) -> None:
    """Confine this process as `argv[1]` (JSON) says, then exec stage 2."""
    config: dict[str, Any] = json.loads(argv[1])
    libc = _libc()
    _prctl(libc, _PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != config["parent_pid"]:
        os._exit(1)  # the parent is already gone
    if config["fd"] != CHANNEL_FD:
        os.dup2(config["fd"], CHANNEL_FD)
        os.close(config["fd"])
    os.set_inheritable(CHANNEL_FD, True)

    layers: dict[str, str] = {}
    # First, while /sys is still writable to us: into the cgroup the parent made and limited.
    layers["cgroup"] = config["cgroup"]["report"]
    try:
        join_cgroup(config["cgroup"]["join"])
    except OSError as exc:
        layers["cgroup"] = f"unavailable: could not join the REPL's cgroup ({exc.strerror})"
    mounts_private = False

    def namespaces() -> str:
        nonlocal mounts_private
        how, mounts_private = enter_namespaces(libc)
        return how

    _apply(layers, "network", namespaces)
    disk = config["disk"]
    read_only = False

    def tmpfs() -> str:
        nonlocal read_only
        if not mounts_private:
            return f"unavailable: no mount namespace (only files up to {disk['file_mb']} MiB each)"
        how, read_only = private_tmpfs(libc, config["workdir"], disk["mb"], disk["files"])
        return how

    _apply(layers, "disk", tmpfs)
    _check(_prctl(libc, _PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")
    hidden = config["landlock_hidden"]
    read, read_listed = readable_roots(config["landlock_read"], hidden)
    run, run_listed = readable_roots(config["landlock_exec"], hidden)
    _apply(
        layers, "files", lambda: landlock(libc, read, run, config["landlock_rw"], read_listed + run_listed)
    )
    # Limits and capabilities first: the filter then refuses to change either.
    set_rlimits(config["rlimits"])
    _apply(layers, "capabilities", lambda: drop_capabilities(libc))
    # Without a read-only view of the rest, chmod/utime are refused everywhere (Landlock has no
    # right for them).
    _apply(layers, "syscalls", lambda: seccomp(libc, metadata=read_only))
    layers["processes"] = (
        "none can be started (seccomp); signals, limits, scheduling, tracing of other processes refused"
        if not layers["syscalls"].startswith("unavailable")
        else "unavailable: no seccomp"
    )

    stage2 = dict(config["stage2"], layers=layers, fd=CHANNEL_FD)
    python = config["python"]
    args = [python, *config["python_flags"], "-c", config["bootstrap"], json.dumps(stage2)]
    sys.stderr.flush()
    os.execv(python, args)  # noqa: S606 - the fixed interpreter, with a fixed bootstrap
