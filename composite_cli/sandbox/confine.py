"""Stage 1 of the REPL process: kernel-level confinement, then exec into the REPL (stage 2).

This runs in a fresh `python -I -S` started by the parent, before any model-written code exists.
It uses ctypes to apply what the kernel offers, in this order:

1. parent-death signal (the REPL dies with the parent), channel moved to fd 3;
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

CHANNEL_FD = 3

_PR_SET_PDEATHSIG = 1
_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000

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

# seccomp: syscalls that fail with EPERM, by name: (x86_64 number, aarch64 number or None).
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENIED_SYSCALLS: dict[str, tuple[int, int | None]] = {
    # network
    "socket": (41, 198), "socketpair": (53, 199), "bind": (49, 200), "listen": (50, 201),
    "accept": (43, 202), "connect": (42, 203), "accept4": (288, 242),
    # processes and threads
    "clone": (56, 220), "fork": (57, None), "vfork": (58, None), "clone3": (435, 435),
    # other processes
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kcmp": (312, 272), "pidfd_open": (434, 434), "pidfd_getfd": (438, 438),
    "pidfd_send_signal": (424, 424),
    # devices, mounts, namespaces
    "mknod": (133, None), "mknodat": (259, 33), "pivot_root": (155, 41), "chroot": (161, 51),
    "mount": (165, 40), "umount2": (166, 39), "unshare": (272, 97), "setns": (308, 268),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442),
    # administering the host
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142),
    "sethostname": (170, 161), "setdomainname": (171, 162), "iopl": (172, None),
    "ioperm": (173, None), "init_module": (175, 105), "delete_module": (176, 106),
    "finit_module": (313, 273), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "syslog": (103, 116), "personality": (135, 92), "acct": (163, 89), "quotactl": (179, 60),
    "lookup_dcookie": (212, 18), "settimeofday": (164, 170), "clock_settime": (227, 112),
    "adjtimex": (159, 171), "clock_adjtime": (305, 266), "fanotify_init": (300, 262),
    "name_to_handle_at": (303, 264), "open_by_handle_at": (304, 265),
    # kernel attack surface
    "add_key": (248, 217), "request_key": (249, 218), "keyctl": (250, 219),
    "perf_event_open": (298, 241), "bpf": (321, 280), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
}  # fmt: skip
# Allowed only when their first argument is the REPL's own pid.
_SIGNAL_SYSCALLS: dict[str, tuple[int, int | None]] = {
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
}  # fmt: skip
_ARCH_INDEX = {"x86_64": 0, "aarch64": 1}


def _numbers(table: dict[str, tuple[int, int | None]], arch: str) -> list[int]:
    numbers = (entry[_ARCH_INDEX[arch]] for entry in table.values())
    return [n for n in numbers if n is not None]


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


def isolate_network(libc: ctypes.CDLL) -> str:
    """Move into a new network namespace (no interfaces up); returns how."""
    if libc.unshare(_CLONE_NEWNET) == 0:
        return "network namespace"
    _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
    return "user + network namespace"


def _landlock_abi(libc: ctypes.CDLL) -> int:
    abi = _syscall(libc, _SYS_LANDLOCK_CREATE_RULESET, None, 0, 1)
    return int(abi) if abi > 0 else 0


def landlock(libc: ctypes.CDLL, read_paths: list[str], exec_paths: list[str], rw_paths: list[str]) -> str:
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


def _seccomp_program(arch: str, own_pid: int) -> bytes:
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM
    denied = _numbers(_DENIED_SYSCALLS, arch)
    signals = _numbers(_SIGNAL_SYSCALLS, arch)
    prog: list[tuple[int, int, int, int]] = [
        (ld, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, _AUDIT_ARCH[arch]),
        (ret, 0, 0, deny),
        (ld, 0, 0, 0),  # seccomp_data.nr
    ]
    checks: list[tuple[int, str]] = []
    if arch == "x86_64":
        checks.append((0x40000000, "x32"))
    checks += [(nr, "deny") for nr in denied] + [(nr, "signal") for nr in signals]
    start = len(prog)
    deny_at = start + len(checks) + 1  # after the checks and one "allow"
    signal_at = deny_at + 1
    for i, (nr, kind) in enumerate(checks):
        here = start + i
        target = signal_at if kind == "signal" else deny_at
        prog.append((jge if kind == "x32" else jeq, target - here - 1, 0, nr))
    prog.append((ret, 0, 0, allow))
    prog.append((ret, 0, 0, deny))
    prog += [
        (ld, 0, 0, 16),  # low 32 bits of args[0] (little-endian)
        (jeq, 0, 1, own_pid),
        (ret, 0, 0, allow),
        (ret, 0, 0, deny),
    ]
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in prog)


def seccomp(libc: ctypes.CDLL) -> str:
    """Install the syscall filter (needs no_new_privs)."""
    arch = platform.machine()
    if arch not in _AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp filter for architecture {arch}")
    program = _seccomp_program(arch, os.getpid())
    filters = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(filters))
    zero = ctypes.c_ulong(0)
    result = libc.prctl(ctypes.c_int(_PR_SET_SECCOMP), ctypes.c_ulong(2), ctypes.byref(fprog), zero, zero)
    _check(result, "prctl(PR_SET_SECCOMP)")
    return f"seccomp ({arch})"


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
    _apply(layers, "network", lambda: isolate_network(libc))
    _check(_prctl(libc, _PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")
    _apply(
        layers,
        "files",
        lambda: landlock(libc, config["landlock_read"], config["landlock_exec"], config["landlock_rw"]),
    )
    _apply(layers, "syscalls", lambda: seccomp(libc))
    set_rlimits(config["rlimits"])
    _apply(layers, "capabilities", lambda: drop_capabilities(libc))

    stage2 = dict(config["stage2"], layers=layers, fd=CHANNEL_FD)
    python = config["python"]
    args = [python, *config["python_flags"], "-c", config["bootstrap"], json.dumps(stage2)]
    sys.stderr.flush()
    os.execv(python, args)  # noqa: S606 - the fixed interpreter, with a fixed bootstrap
