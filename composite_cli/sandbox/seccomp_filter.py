"""The REPL's seccomp filter: an allow list of system calls, with argument checks.

Only the calls a CPython REPL needs are allowed; everything else fails with EPERM. Calls that can
name another process are allowed only on the REPL itself (`pid` 0 or its own pid): signals
(`kill`, `tkill`, `tgkill`, `rt_*sigqueueinfo`), scheduling and priority (`sched_set*`,
`setpriority`) and `prlimit64`, which may moreover only read limits, never set them (the limits are
set before the filter is installed). Never allowed: creating processes or threads (`clone*`,
`fork`, `vfork`), sockets other than the inherited channel, `ptrace`, `process_vm_*`, `pidfd_*`,
`ioprio_set`, `memfd_create` (memory that `RLIMIT_AS` does not count), mounts, namespaces, bpf,
io_uring, keyrings. `fcntl` may not aim SIGIO at another process, `ioctl` is limited to a few
terminal and file queries, `prctl` to reading and naming.

The program is plain classic BPF built here (no libseccomp needed at run time); the syscall
numbers are checked against libseccomp's tables by the tests where the library is installed.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_ARCH_INDEX = {"x86_64": 0, "aarch64": 1}

# name: (x86_64 number, aarch64 number or None where the call does not exist there)
ALLOWED: dict[str, tuple[int, int | None]] = {
    # files and descriptors (Landlock decides which paths)
    "read": (0, 63), "write": (1, 64), "readv": (19, 65), "writev": (20, 66),
    "pread64": (17, 67), "pwrite64": (18, 68), "preadv": (295, 69), "pwritev": (296, 70),
    "preadv2": (327, 286), "pwritev2": (328, 287), "open": (2, None), "openat": (257, 56),
    "openat2": (437, 437), "close": (3, 57), "close_range": (436, 436), "stat": (4, None),
    "fstat": (5, 80), "lstat": (6, None), "newfstatat": (262, 79), "statx": (332, 291),
    "lseek": (8, 62), "access": (21, None), "faccessat": (269, 48), "faccessat2": (439, 439),
    "getdents": (78, None), "getdents64": (217, 61), "readlink": (89, None),
    "readlinkat": (267, 78), "mkdir": (83, None), "mkdirat": (258, 34), "rmdir": (84, None),
    "unlink": (87, None), "unlinkat": (263, 35), "rename": (82, None), "renameat": (264, 38),
    "renameat2": (316, 276), "link": (86, None), "linkat": (265, 37), "symlink": (88, None),
    "symlinkat": (266, 36), "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53),
    "fchmodat2": (452, 452), "truncate": (76, 45), "ftruncate": (77, 46), "fsync": (74, 82),
    "fdatasync": (75, 83), "flock": (73, 32), "fallocate": (285, 47), "dup": (32, 23),
    "dup2": (33, None), "dup3": (292, 24), "getcwd": (79, 17), "chdir": (80, 49),
    "fchdir": (81, 50), "umask": (95, 166), "utimensat": (280, 88), "utimes": (235, None),
    "utime": (132, None), "futimesat": (261, None), "statfs": (137, 43), "fstatfs": (138, 44),
    "copy_file_range": (326, 285), "sendfile": (40, 71), "fadvise64": (221, 223),
    "getxattr": (191, 8), "lgetxattr": (192, 9), "fgetxattr": (193, 10), "listxattr": (194, 11),
    "llistxattr": (195, 12), "flistxattr": (196, 13), "pipe": (22, None), "pipe2": (293, 59),
    # waiting for descriptors
    "poll": (7, None), "ppoll": (271, 73), "select": (23, None), "pselect6": (270, 72),
    "epoll_create": (213, None), "epoll_create1": (291, 20), "epoll_ctl": (233, 21),
    "epoll_wait": (232, None), "epoll_pwait": (281, 22), "epoll_pwait2": (441, 441),
    "eventfd": (284, None), "eventfd2": (290, 19),
    # the inherited channel (creating, binding or connecting sockets is not allowed)
    "sendto": (44, 206), "recvfrom": (45, 207), "sendmsg": (46, 211), "recvmsg": (47, 212),
    "shutdown": (48, 210), "getsockopt": (55, 209), "setsockopt": (54, 208),
    "getsockname": (51, 204), "getpeername": (52, 205),
    # memory (RLIMIT_AS counts all of it)
    "brk": (12, 214), "mmap": (9, 222), "munmap": (11, 215), "mprotect": (10, 226),
    "mremap": (25, 216), "madvise": (28, 233), "msync": (26, 227), "mincore": (27, 232),
    # facts about itself and the machine
    "getpid": (39, 172), "getppid": (110, 173), "gettid": (186, 178), "getuid": (102, 174),
    "geteuid": (107, 175), "getgid": (104, 176), "getegid": (108, 177), "getgroups": (115, 158),
    "getresuid": (118, 148), "getresgid": (120, 150), "getpgrp": (111, None),
    "getpgid": (121, 155), "getsid": (124, 156), "getrusage": (98, 165), "times": (100, 153),
    "uname": (63, 160), "sysinfo": (99, 179), "getcpu": (309, 168), "getrlimit": (97, 163),
    "capget": (125, 90), "sched_yield": (24, 124), "sched_get_priority_max": (146, 125),
    "sched_get_priority_min": (147, 126), "getrandom": (318, 278),
    # time and timers (of this process)
    "clock_gettime": (228, 113), "clock_getres": (229, 114), "gettimeofday": (96, 169),
    "time": (201, None), "nanosleep": (35, 101), "clock_nanosleep": (230, 115),
    "alarm": (37, None), "setitimer": (38, 103), "getitimer": (36, 102),
    "timer_create": (222, 107), "timer_settime": (223, 110), "timer_gettime": (224, 108),
    "timer_getoverrun": (225, 109), "timer_delete": (226, 111),
    # signal handling, the runtime, exiting
    "rt_sigaction": (13, 134), "rt_sigprocmask": (14, 135), "rt_sigreturn": (15, 139),
    "rt_sigpending": (127, 136), "rt_sigsuspend": (130, 133), "rt_sigtimedwait": (128, 137),
    "sigaltstack": (131, 132), "pause": (34, None), "restart_syscall": (219, 128),
    "futex": (202, 98), "set_robust_list": (273, 99), "set_tid_address": (218, 96),
    "rseq": (334, 293), "arch_prctl": (158, None), "exit": (60, 93), "exit_group": (231, 94),
    "wait4": (61, 260), "waitid": (247, 95),
    # stage 1 execs stage 2 under this filter; Landlock allows executing only the interpreter
    "execve": (59, 221),
}  # fmt: skip

# Calls allowed only when their arguments pass the checks: name -> (numbers, conditions).
# A condition is (argument index, "self" | "zero" | "in" | "not_in", values): "self" means 0 or the
# REPL's own pid, "zero" a NULL pointer (all 64 bits), "in"/"not_in" the low 32 bits.
_SELF: tuple[int, ...] = ()
_F_SETOWN, _F_SETSIG, _F_SETOWN_EX = 8, 10, 15
_TCGETS, _TIOCGWINSZ, _FIONREAD, _FIONBIO, _FIONCLEX, _FIOCLEX = (
    0x5401,
    0x5413,
    0x541B,
    0x5421,
    0x5450,
    0x5451,
)
_PR_GET_DUMPABLE, _PR_SET_NAME, _PR_GET_NAME, _PR_GET_SECCOMP, _PR_GET_NO_NEW_PRIVS = 3, 15, 16, 21, 39
_PR_SET_VMA = 0x53564D41
_PRCTL_OPTIONS = (
    _PR_GET_DUMPABLE,
    _PR_SET_NAME,
    _PR_GET_NAME,
    _PR_GET_SECCOMP,
    _PR_GET_NO_NEW_PRIVS,
    _PR_SET_VMA,
)
Condition = tuple[int, str, tuple[int, ...]]
CHECKED: dict[str, tuple[tuple[int, int | None], tuple[Condition, ...]]] = {
    "kill": ((62, 129), ((0, "self", _SELF),)),
    "tkill": ((200, 130), ((0, "self", _SELF),)),
    "tgkill": ((234, 131), ((0, "self", _SELF), (1, "self", _SELF))),
    "rt_sigqueueinfo": ((129, 138), ((0, "self", _SELF),)),
    "rt_tgsigqueueinfo": ((297, 240), ((0, "self", _SELF), (1, "self", _SELF))),
    "prlimit64": ((302, 261), ((0, "self", _SELF), (2, "zero", ()))),
    "getpriority": ((140, 141), ((0, "in", (0,)), (1, "self", _SELF))),
    "setpriority": ((141, 140), ((0, "in", (0,)), (1, "self", _SELF))),
    "sched_setaffinity": ((203, 122), ((0, "self", _SELF),)),
    "sched_getaffinity": ((204, 123), ((0, "self", _SELF),)),
    "sched_setscheduler": ((144, 119), ((0, "self", _SELF),)),
    "sched_getscheduler": ((145, 120), ((0, "self", _SELF),)),
    "sched_setparam": ((142, 118), ((0, "self", _SELF),)),
    "sched_getparam": ((143, 121), ((0, "self", _SELF),)),
    "sched_setattr": ((314, 274), ((0, "self", _SELF),)),
    "sched_getattr": ((315, 275), ((0, "self", _SELF),)),
    "sched_rr_get_interval": ((148, 127), ((0, "self", _SELF),)),
    "fcntl": ((72, 25), ((1, "not_in", (_F_SETOWN, _F_SETSIG, _F_SETOWN_EX)),)),
    "ioctl": ((16, 29), ((1, "in", (_TCGETS, _TIOCGWINSZ, _FIONREAD, _FIONBIO, _FIONCLEX, _FIOCLEX)),)),
    "prctl": ((157, 167), ((0, "in", _PRCTL_OPTIONS),)),
}  # fmt: skip

# Refused calls the tests name (they must never appear above).
NEVER: dict[str, tuple[int, int | None]] = {
    "memfd_create": (319, 279), "clone": (56, 220), "clone3": (435, 435), "fork": (57, None),
    "vfork": (58, None), "socket": (41, 198), "socketpair": (53, 199), "ptrace": (101, 117),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438), "ioprio_set": (251, 30),
    "setrlimit": (160, 164), "unshare": (272, 97), "mount": (165, 40),
}  # fmt: skip

_LD_W_ABS = 0x20
_JEQ, _JGE, _JA = 0x15, 0x35, 0x05
_RET = 0x06
_ALLOW = 0x7FFF0000
_DENY = 0x00050000 | errno.EPERM  # SECCOMP_RET_ERRNO | EPERM
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16

# One instruction before label resolution: (code, jump-if-true, jump-if-false, k). A jump is an
# int (a raw offset: 0 is the next instruction) or a label; `_JA` jumps to its jump-if-true.
_Jump = int | str
_Insn = tuple[int, _Jump, _Jump, int]


def _arg_checks(cond: Condition, own_pid: int, ok: str, deny: str) -> list[_Insn]:
    """Instructions that go to `ok` when the condition holds, else to `deny`."""
    index, kind, values = cond
    low = _OFF_ARGS + 8 * index  # seccomp_data.args[i], low word first (little-endian)
    if kind == "zero":
        return [
            (_LD_W_ABS, 0, 0, low),
            (_JEQ, 0, deny, 0),
            (_LD_W_ABS, 0, 0, low + 4),
            (_JEQ, ok, deny, 0),
        ]
    if kind == "self":
        values = (0, own_pid)
    hit, miss = (ok, deny) if kind in ("in", "self") else (deny, ok)
    return [(_LD_W_ABS, 0, 0, low), *((_JEQ, hit, 0, v) for v in values), (_JA, miss, 0, 0)]


def _resolve(program: Sequence[tuple[str | None, _Insn]]) -> bytes:
    positions = {label: i for i, (label, _) in enumerate(program) if label}

    def offset(jump: _Jump, here: int) -> int:
        return jump if isinstance(jump, int) else positions[jump] - here - 1

    out = []
    for i, (_, (code, jt, jf, k)) in enumerate(program):
        t, f = offset(jt, i), offset(jf, i)
        if code == _JA:
            k, t, f = t, 0, 0
        elif not (0 <= t < 256 and 0 <= f < 256):
            raise ValueError("seccomp program: conditional jump too far")
        out.append(struct.pack("=HBBI", code, t, f, k))
    return b"".join(out)


# Changing modes and times of files: allowed only where everything outside the REPL's own
# directory is mounted read-only (Landlock does not cover them; as root every file is "ours").
METADATA = frozenset(
    {"chmod", "fchmod", "fchmodat", "fchmodat2", "utimensat", "utimes", "utime", "futimesat"}
)


def build_program(arch: str, own_pid: int, *, metadata: bool = False) -> bytes:
    """The filter as a sock_filter array for `arch` ("x86_64" or "aarch64").

    `metadata` allows the calls in METADATA (pass True only when the rest is read-only).
    """
    index = _ARCH_INDEX[arch]
    body: list[tuple[str | None, _Insn]] = [
        (None, (_LD_W_ABS, 0, 0, _OFF_ARCH)),
        (None, (_JEQ, 1, 0, AUDIT_ARCH[arch])),
        (None, (_RET, 0, 0, _DENY)),
        (None, (_LD_W_ABS, 0, 0, _OFF_NR)),
    ]
    if arch == "x86_64":
        body += [(None, (_JGE, 0, 1, 0x40000000)), (None, (_RET, 0, 0, _DENY))]  # the x32 ABI
    for name, entry in ALLOWED.items():
        if (nr := entry[index]) is not None and (metadata or name not in METADATA):
            body += [(None, (_JEQ, 0, 1, nr)), (None, (_RET, 0, 0, _ALLOW))]
    rules: list[tuple[str | None, _Insn]] = []
    for name, (entry, conditions) in CHECKED.items():
        if (nr := entry[index]) is None:
            continue
        body += [(None, (_JEQ, 0, 1, nr)), (None, (_JA, name, 0, 0))]
        for i, cond in enumerate(conditions):
            ok = f"{name} {i + 1}" if i + 1 < len(conditions) else f"{name} allow"
            insns = _arg_checks(cond, own_pid, ok, f"{name} deny")
            rules += [
                ((name if i == 0 else f"{name} {i}") if j == 0 else None, insn)
                for j, insn in enumerate(insns)
            ]
        rules += [(f"{name} allow", (_RET, 0, 0, _ALLOW)), (f"{name} deny", (_RET, 0, 0, _DENY))]
    return _resolve([*body, (None, (_RET, 0, 0, _DENY)), *rules])
