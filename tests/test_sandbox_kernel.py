"""The sandbox's kernel layers, tested with the Python layer switched off.

Each probe runs the real stage 1 (`confine.py`: namespaces, tmpfs, Landlock, rlimits,
capabilities, seccomp) and then, instead of the REPL, a stage 2 that installs no audit hook and
calls the kernel directly through ctypes: what a model's code can do once it has cleared the
audit policy. A probe prints one JSON object; the tests assert on it and on the outside world.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

from composite_cli.sandbox import Sandbox, SandboxLimits
from composite_cli.sandbox import process as sandbox_process
from composite_cli.sandbox.seccomp_filter import ALLOWED, AUDIT_ARCH, CHECKED, NEVER

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's kernel layers are Linux only")

ARCH = platform.machine()
_PRELUDE = """
import ctypes, errno, json, os, sys
layers = json.loads(sys.argv[1])["layers"]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sys_call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return "ALLOWED" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def attempt(f):
    try:
        f()
        return "ALLOWED"
    except RuntimeError as exc:  # threading: "can't start new thread"
        return "RuntimeError"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
result = {}
"""
_POSTLUDE = """
print(json.dumps({"layers": layers, "result": result}), flush=True)
"""


def nr(name: str) -> int:
    """The syscall number on this machine, from the filter's own tables."""
    table = {**ALLOWED, **NEVER, **{k: v[0] for k, v in CHECKED.items()}}
    number = table[name][0 if ARCH == "x86_64" else 1]
    assert number is not None
    return number


def run_confined(
    tmp_path: Path, code: str, limits: SandboxLimits | None = None, group: Any = None
) -> dict[str, Any]:
    """Run `code` as stage 2 under the real stage 1 (in cgroup `group`, a sandbox.cgroup.ReplCgroup,
    when given); returns {"layers": ..., "result": ...}."""
    if ARCH not in AUDIT_ARCH:
        pytest.skip(f"no seccomp filter for {ARCH}")
    limits = limits or SandboxLimits()
    workdir = tmp_path / "workdir"
    workdir.mkdir(exist_ok=True)
    left, right = socket.socketpair()
    python = sandbox_process.python_executable()
    extra = (group, group.report()) if group is not None else ()
    config = sandbox_process._confine_config(limits, str(workdir), right.fileno(), python, *extra)
    config["bootstrap"] = _PRELUDE + textwrap.dedent(code) + _POSTLUDE
    try:
        proc = subprocess.run(
            [
                python,
                *sandbox_process.PYTHON_FLAGS,
                "-c",
                sandbox_process._bootstrap("confine"),
                json.dumps(config),
            ],
            env=sandbox_process.child_environment(str(workdir)),
            cwd=workdir,
            pass_fds=(right.fileno(),),
            start_new_session=True,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        left.close()
        right.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return report


def require(report: dict[str, Any], *layers: str) -> None:
    for layer in layers:
        state = report["layers"].get(layer, "")  # a layer that is not reported at all fails the test
        if state.startswith("unavailable"):
            pytest.skip(f"the {layer} layer is unavailable here: {state}")


@pytest.fixture
def bystander():
    """Another process of the same user, as the REPL's parent would be."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


# -- finding 1: the REPL must not touch another process ------------------------------------------


def test_prlimit_on_the_parent_is_refused_and_its_limits_are_unchanged(tmp_path):
    """The escape that killed `composite chat`: prlimit64(getppid(), ...) through ctypes."""
    limits = (resource.RLIMIT_NOFILE, resource.RLIMIT_AS, resource.RLIMIT_CPU)
    before = [resource.getrlimit(r) for r in limits]
    try:
        report = run_confined(
            tmp_path,
            f"""
            class RL(ctypes.Structure):
                _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]
            # Values that would not crash the test run if they got through (4 TiB, 1000 files).
            for name, res, value in (("nofile", {resource.RLIMIT_NOFILE}, 1000), ("as", {resource.RLIMIT_AS}, 1 << 42)):
                result[name] = sys_call({nr("prlimit64")}, os.getppid(), res, ctypes.byref(RL(value, value)), None)
            low = RL(100, 100)
            # Reading one's own limits still works; changing them after the setup does not.
            result["own read"] = sys_call({nr("prlimit64")}, 0, {resource.RLIMIT_NOFILE}, None, ctypes.byref(RL()))
            result["own set"] = sys_call({nr("prlimit64")}, 0, {resource.RLIMIT_NOFILE}, ctypes.byref(low), None)
            """,
        )
        require(report, "syscalls")
    finally:
        after = [resource.getrlimit(r) for r in limits]
        for r, value in zip(limits, before, strict=True):
            resource.setrlimit(r, value)  # repair, so a failure here does not break the run
    assert after == before
    assert report["result"] == {"nofile": "EPERM", "as": "EPERM", "own read": "ALLOWED", "own set": "EPERM"}


def test_cpu_limit_on_another_process_is_refused_and_it_lives(tmp_path, bystander):
    report = run_confined(
        tmp_path,
        f"""
        class RL(ctypes.Structure):
            _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]
        result["prlimit cpu"] = sys_call({nr("prlimit64")}, {bystander.pid}, 0, ctypes.byref(RL(1, 1)), None)
        """,
    )
    require(report, "syscalls")
    assert report["result"]["prlimit cpu"] == "EPERM"
    assert resource.prlimit(bystander.pid, resource.RLIMIT_CPU) == (
        resource.RLIM_INFINITY,
        resource.RLIM_INFINITY,
    )
    assert bystander.poll() is None


def test_other_processes_cannot_be_signalled_scheduled_traced_or_read(tmp_path, bystander):
    pid = bystander.pid
    priority_before = os.getpriority(os.PRIO_PROCESS, pid)
    affinity_before = os.sched_getaffinity(pid)
    report = run_confined(
        tmp_path,
        f"""
        pid = {pid}
        buf = ctypes.create_string_buffer(64)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 64)
        mask = ctypes.c_ulong(1)
        param = ctypes.c_int(0)
        result.update({{
            "kill": sys_call({nr("kill")}, pid, 0),
            "kill parent": sys_call({nr("kill")}, os.getppid(), 0),
            "kill all": sys_call({nr("kill")}, -1, 0),
            "tkill": sys_call({nr("tkill")}, pid, 0),
            "tgkill": sys_call({nr("tgkill")}, pid, pid, 0),
            "rt_sigqueueinfo": sys_call({nr("rt_sigqueueinfo")}, pid, 0, ctypes.create_string_buffer(128)),
            "setpriority": sys_call({nr("setpriority")}, 0, pid, 19),
            "sched_setaffinity": sys_call({nr("sched_setaffinity")}, pid, 8, ctypes.byref(mask)),
            "sched_setscheduler": sys_call({nr("sched_setscheduler")}, pid, 5, ctypes.byref(param)),
            "sched_setparam": sys_call({nr("sched_setparam")}, pid, ctypes.byref(param)),
            "ioprio_set": sys_call({nr("ioprio_set")}, 1, pid, (3 << 13)),
            "process_vm_readv": sys_call({nr("process_vm_readv")}, pid, iov, 1, iov, 1, 0),
            "process_vm_writev": sys_call({nr("process_vm_writev")}, pid, iov, 1, iov, 1, 0),
            "pidfd_open": sys_call({nr("pidfd_open")}, pid, 0),
            "ptrace attach": sys_call({nr("ptrace")}, 16, pid, 0, 0),
            "ptrace seize": sys_call({nr("ptrace")}, 0x4206, pid, 0, 0),
            "fcntl F_SETOWN": sys_call({nr("fcntl")}, 3, 8, pid),
            # The REPL itself may still do all of this to itself.
            "kill self": sys_call({nr("kill")}, os.getpid(), 0),
            "nice self": attempt(lambda: os.nice(1)),
            "affinity self": attempt(lambda: os.sched_setaffinity(0, os.sched_getaffinity(0))),
        }})
        """,
    )
    require(report, "syscalls")
    result = report["result"]
    own = {k: result.pop(k) for k in ("kill self", "nice self", "affinity self")}
    assert own == dict.fromkeys(own, "ALLOWED")
    assert result == dict.fromkeys(result, "EPERM")
    assert bystander.poll() is None
    assert os.getpriority(os.PRIO_PROCESS, pid) == priority_before
    assert os.sched_getaffinity(pid) == affinity_before


# -- finding 3 and friends: allow list, memfd, processes -----------------------------------------


def test_memfd_create_is_refused(tmp_path):
    """memfd pages are not counted by RLIMIT_AS: 2.5 GB were held against a 1 GB limit."""
    report = run_confined(tmp_path, 'result["memfd"] = attempt(lambda: os.memfd_create("x"))')
    require(report, "syscalls")
    assert report["result"]["memfd"] == "EPERM"


def test_the_filter_is_an_allow_list(tmp_path):
    """A call on no list at all (inotify, userfaultfd's neighbours...) is refused by default."""
    numbers = {"inotify_init1": (294, 26), "setns": (308, 268), "kcmp": (312, 272), "mknodat": (259, 33)}
    calls = {name: pair[0 if ARCH == "x86_64" else 1] for name, pair in numbers.items()}
    report = run_confined(
        tmp_path, "".join(f'result["{n}"] = sys_call({v}, 0, 0, 0)\n' for n, v in calls.items())
    )
    require(report, "syscalls")
    assert report["result"] == dict.fromkeys(calls, "EPERM")


def test_no_process_can_be_started_by_any_route(tmp_path):
    report = run_confined(
        tmp_path,
        """
        import subprocess, _posixsubprocess
        result["fork"] = attempt(lambda: os.fork() or os._exit(0))
        result["subprocess (fork_exec)"] = attempt(lambda: subprocess.run(["/bin/true"]))
        result["posix_spawn"] = attempt(lambda: os.posix_spawn("/bin/true", ["true"], {}))
        import threading
        result["thread"] = attempt(lambda: threading.Thread(target=print).start())
        """,
    )
    require(report, "syscalls")
    assert "ALLOWED" not in report["result"].values(), report["result"]


# -- finding 4: disk cap, site-packages ---------------------------------------------------------


def test_total_disk_use_is_capped(tmp_path):
    """Many files, each under the per-file limit, still cannot exceed the total (1.28 GB in 3.6 s)."""
    limits = SandboxLimits(max_disk_mb=16, max_file_mb=8, max_files=64)
    report = run_confined(
        tmp_path,
        """
        written, error = 0, None
        chunk = b"x" * (1 << 20)
        try:
            for i in range(48):
                with open(f"f{i}", "wb") as f:
                    for _ in range(4):
                        f.write(chunk)
                        f.flush()
                        written += len(chunk)
        except OSError as exc:
            error = errno.errorcode.get(exc.errno)
        result["written_mb"] = written >> 20
        result["error"] = error
        for name in os.listdir("."):
            os.remove(name)
        made = 0
        try:
            for i in range(200):
                open(f"empty{i}", "w").close()
                made += 1
        except OSError as exc:
            result["files error"] = errno.errorcode.get(exc.errno)
        result["files"] = made
        """,
        limits,
    )
    require(report, "disk")
    result = report["result"]
    assert result["written_mb"] <= 16 and result["error"] == "ENOSPC", result
    assert result["files"] < 64 and result["files error"] == "ENOSPC", result
    assert not any((tmp_path / "workdir").iterdir())  # nothing reached the real disk


def test_site_packages_are_not_readable(tmp_path):
    """Only the standard library, the sandbox package and system libraries are readable."""
    targets = [p for p in sandbox_process.package_dirs() if any(Path(p).iterdir())]
    files = [str(next(f for f in Path(d).rglob("*.py"))) for d in targets if any(Path(d).rglob("*.py"))]
    assert files, "no site-packages with Python files found"
    stdlib_file = os.path.join(sysconfig.get_paths()["stdlib"], "json", "__init__.py")
    report = run_confined(
        tmp_path,
        f"""
        for path in {files!r}:
            result[path] = attempt(lambda: open(path).read(1))
        result["stdlib"] = attempt(lambda: open({stdlib_file!r}).read(1))
        """,
    )
    require(report, "files")
    result = report["result"]
    assert result.pop("stdlib") == "ALLOWED"
    assert result == dict.fromkeys(files, "EACCES")


def test_modes_and_times_outside_the_directory_cannot_change(tmp_path):
    """Landlock has no right for chmod/utime: the rest of the file system is read-only instead."""
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o600)
    before = outside.stat()
    report = run_confined(
        tmp_path,
        f"""
        import shutil
        result["chmod"] = attempt(lambda: os.chmod({str(outside)!r}, 0o777))
        result["utime"] = attempt(lambda: os.utime({str(outside)!r}, (0, 0)))
        def inside():
            open("mine", "w").close()
            os.chmod("mine", 0o600)
            os.utime("mine", (0, 0))
            shutil.copy2("mine", "copy")
        result["inside"] = attempt(inside)
        """,
    )
    require(report, "syscalls")
    result = report["result"]
    assert result["chmod"] in ("EROFS", "EPERM") and result["utime"] in ("EROFS", "EPERM"), result
    if "everything else read-only" in report["layers"]["disk"]:
        assert result["inside"] == "ALLOWED"
    after = outside.stat()
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


def test_stack_limit_is_raised_for_deep_recursion(tmp_path):
    report = run_confined(
        tmp_path, 'import resource\nresult["stack"] = resource.getrlimit(resource.RLIMIT_STACK)'
    )
    assert report["result"]["stack"] == [sandbox_process.STACK_BYTES] * 2


# -- finding 5 of the brief: nothing left running -----------------------------------------------


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid or int(fields[4]) == sid:  # process group or session
                members.append(int(entry))
    return members


async def test_nothing_is_left_running_after_close():
    async with Sandbox(limits=SandboxLimits(timeout_s=5)) as sb:
        await sb.start({})
        pid = sb.pid
        assert pid is not None
        # Whatever the code tries, with or without the hook, no second process exists.
        await sb.execute("import os\ntry:\n    os.fork()\nexcept OSError:\n    pass")
        assert _session_members(pid) == [pid]
    for _ in range(50):
        if not _session_members(pid):
            break
        await asyncio.sleep(0.05)
    assert _session_members(pid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- the isolation report and the tables ----------------------------------------------------------


async def test_isolation_reports_every_kernel_layer():
    async with Sandbox(limits=SandboxLimits(timeout_s=5)) as sb:
        await sb.start({})
        layers = dict(sb.isolation)
        workdir = sb.workdir
        assert workdir is not None
        (await sb.execute("open('seen.txt', 'w').write('yes')"))
        assert (Path(workdir) / "seen.txt").read_text() == "yes"  # the parent sees the tmpfs
    assert {"network", "disk", "files", "syscalls", "processes", "capabilities", "cgroup"} <= set(layers)
    # the cgroup layer's own behaviour is tested in tests/test_sandbox_cgroup.py
    assert layers["cgroup"].startswith(("unavailable", "v1 memory", "v2 memory")), layers
    if not layers["syscalls"].startswith("unavailable"):
        assert "allow list" in layers["syscalls"]


def test_syscall_numbers_match_libseccomp():
    """The hand-written tables, checked against libseccomp's for both architectures."""
    name = ctypes.util.find_library("seccomp")
    if not name:
        pytest.skip("libseccomp is not installed")
    lib = ctypes.CDLL(name)
    resolve = lib.seccomp_syscall_resolve_name_arch
    resolve.argtypes, resolve.restype = [ctypes.c_uint32, ctypes.c_char_p], ctypes.c_int
    table = {**ALLOWED, **NEVER, **{k: v[0] for k, v in CHECKED.items()}}
    wrong = {}
    for syscall, numbers in table.items():
        for arch, expected in zip(("x86_64", "aarch64"), numbers, strict=True):
            got = resolve(AUDIT_ARCH[arch], syscall.encode())
            if (got if got >= 0 else None) != expected:
                wrong[f"{syscall}/{arch}"] = (expected, got)
    assert not wrong
    assert not set(NEVER) & (set(ALLOWED) | set(CHECKED))
