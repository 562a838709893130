"""The REPL's own cgroup: memory (tmpfs pages included) and task count bounded by the kernel.

Each REPL gets a child cgroup of the parent's own, made and limited by the parent before the
REPL starts, joined by the REPL's stage 1 (`confine.py`) as its first step, before any model
code exists, and removed on close once its processes are dead. RLIMIT_AS bounds address space;
the cgroup also counts what it does not see: the pages of the REPL's private tmpfs and kernel
memory. Its `pids.max` bounds processes and threads together.

- cgroup v2 (a `cgroup2` mount holding our cgroup, `0::/path` in /proc/self/cgroup): the memory
  and pids controllers must be delegated to our cgroup (listed in its `cgroup.controllers`) and
  the cgroup writable. v2 forbids processes in a cgroup whose children have controllers ("no
  internal processes"), so, as nsjail does, the parent moves itself into a leaf of its own
  cgroup first, and only when it is the cgroup's only process. Limits: memory.max,
  memory.swap.max 0, pids.max.
- cgroup v1 (a `cgroup` mount per controller): each of the memory and pids hierarchies where our
  cgroup directory is writable. Limits: memory.limit_in_bytes (and memory.memsw.limit_in_bytes,
  so swap adds nothing), pids.max.
- Otherwise the sandbox runs without this layer and the report says why.

The limit files are made read-only (mode 0444) for the REPL, whose capabilities are dropped; the
REPL's mount namespace makes /sys read-only and Landlock grants it nothing there, so model code
can neither change the limits nor move itself out. This module is stdlib only: stage 1 imports it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CONTROLLERS = ("memory", "pids")
PREFIX = "composite-repl-"
SELF_LEAF = "composite-parent-"
_MB = 1024 * 1024
_counter = itertools.count(1)


class CgroupUnavailable(Exception):
    """No usable cgroup for the REPL; the message is the reason shown in the isolation report."""


@dataclass(frozen=True)
class Mount:
    point: str
    root: str
    fstype: str
    options: frozenset[str]


@dataclass(frozen=True)
class Site:
    """Where REPL cgroups are made: the parent directory per controller (v2: one for both)."""

    version: int
    parents: dict[str, str]
    # v2 only, done once by `prepare()`: move this process into a leaf, enable the controllers.
    self_leaf: str = ""
    enable: tuple[str, ...] = ()


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup mounts in /proc/self/mountinfo text (malformed lines are skipped)."""
    mounts = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        parts, rest = head.split(), tail.split()
        if not sep or len(parts) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(rest[2].split(","))
        mounts.append(Mount(_unescape(parts[4]), _unescape(parts[3]), rest[0], options))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/self/cgroup text as {controller: path}; the v2 entry (`0::/path`) is under ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        number, sep, rest = line.partition(":")
        names, sep2, path = rest.partition(":")
        if not sep or not sep2 or not number.isdigit() or not path.startswith("/"):
            continue
        if number == "0" and not names:
            paths[""] = path
        for name in names.split(","):
            if name:
                paths[name] = path
    return paths


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def _directory(mount: Mount, path: str) -> str | None:
    """The directory of cgroup `path` under `mount`, or None if the mount does not show it."""
    root, path = mount.root.rstrip("/"), path.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None
    return mount.point.rstrip("/") + path[len(root) :] or "/"


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def detect(
    mountinfo: str,
    proc_cgroup: str,
    *,
    pid: int | None = None,
    writable: Callable[[str], bool] = _writable,
) -> Site:
    """Where this process can make REPL cgroups; CgroupUnavailable(reason) if nowhere.

    Pure but for reading the cgroup files (`cgroup.controllers` and friends) it finds.
    """
    mounts = parse_mountinfo(mountinfo)
    paths = parse_proc_cgroup(proc_cgroup)
    pid = os.getpid() if pid is None else pid
    reasons = []
    if "" in paths and any(m.fstype == "cgroup2" for m in mounts):
        try:
            return _detect_v2(mounts, paths[""], pid, writable)
        except CgroupUnavailable as exc:
            reasons.append(str(exc))
    if any(m.fstype == "cgroup" and set(CONTROLLERS) & m.options for m in mounts):
        try:
            return _detect_v1(mounts, paths, writable)
        except CgroupUnavailable as exc:
            reasons.append(str(exc))
    raise CgroupUnavailable("; ".join(reasons) or "no cgroup filesystem")


def _detect_v2(mounts: list[Mount], path: str, pid: int, writable: Callable[[str], bool]) -> Site:
    shown = [d for m in mounts if m.fstype == "cgroup2" and (d := _directory(m, path)) is not None]
    if not shown:
        raise CgroupUnavailable(f"v2, our cgroup {path} is not under a cgroup2 mount")
    here = shown[0]
    controllers = _read(os.path.join(here, "cgroup.controllers")).split()
    missing = [c for c in CONTROLLERS if c not in controllers]
    if missing:
        raise CgroupUnavailable(f"v2, {' and '.join(missing)} controller not delegated to {path}")
    if not writable(here) or not writable(os.path.join(here, "cgroup.subtree_control")):
        raise CgroupUnavailable(f"v2, {path} not writable")
    enabled = _read(os.path.join(here, "cgroup.subtree_control")).split()
    enable = tuple(c for c in CONTROLLERS if c not in enabled)
    if not enable or path == "/":
        return Site(2, dict.fromkeys(CONTROLLERS, here), enable=enable)  # the root may hold processes
    # No internal processes: the controllers can be enabled for children only when this cgroup
    # holds no process, so this process moves to a leaf, if it is the only one here.
    others = [p for p in _read(os.path.join(here, "cgroup.procs")).split() if p != str(pid)]
    if others:
        raise CgroupUnavailable(
            f"v2, {path} holds other processes, so its children cannot have the memory and pids controllers"
        )
    leaf = os.path.join(here, f"{SELF_LEAF}{pid}")
    return Site(2, dict.fromkeys(CONTROLLERS, here), self_leaf=leaf, enable=enable)


def _detect_v1(mounts: list[Mount], paths: dict[str, str], writable: Callable[[str], bool]) -> Site:
    parents: dict[str, str] = {}
    problems = []
    for controller in CONTROLLERS:
        path = paths.get(controller)
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        where = _directory(mount, path) if mount is not None and path is not None else None
        if where is None:
            problems.append(f"{controller} not mounted")
        elif not writable(where):
            problems.append(f"{controller} {path} not writable")
        else:
            parents[controller] = where
    if "memory" not in parents:
        raise CgroupUnavailable(f"v1, {'; '.join(problems)}")
    return Site(1, parents)


def prepare(site: Site) -> Site:
    """Do a v2 site's one-time steps: this process into a leaf, the controllers enabled."""
    if site.self_leaf:
        with contextlib.suppress(FileExistsError):
            os.mkdir(site.self_leaf, 0o755)
        _write(os.path.join(site.self_leaf, "cgroup.procs"), str(os.getpid()))
    if site.enable:
        here = site.parents[CONTROLLERS[0]]
        _write(os.path.join(here, "cgroup.subtree_control"), " ".join(f"+{c}" for c in site.enable))
    return Site(site.version, site.parents)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


# This process's site, found (and prepared) once: after a v2 move into a leaf, detecting again
# would see the leaf as our cgroup.
_site: Site | CgroupUnavailable | None = None


def site_of_this_process() -> Site:
    """Where this process makes REPL cgroups (detected once); CgroupUnavailable if nowhere."""
    global _site
    if _site is None:
        try:
            _site = _find_site()
        except CgroupUnavailable as exc:
            _site = exc
    if isinstance(_site, CgroupUnavailable):
        raise CgroupUnavailable(str(_site))
    return _site


def _find_site() -> Site:
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open("/proc/self/cgroup") as f:
            proc_cgroup = f.read()
    except OSError as exc:
        raise CgroupUnavailable(f"cannot read /proc/self: {exc.strerror}") from None
    site = detect(mountinfo, proc_cgroup)
    try:
        site = prepare(site)
    except OSError as exc:
        raise CgroupUnavailable(f"v2, could not enable the controllers: {exc.strerror}") from None
    remove_stale(site)
    return site


def remove_stale(site: Site) -> None:
    """Remove empty REPL cgroups left by parents that died (kill -9) before closing them."""
    for parent in set(site.parents.values()):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            owner = name[len(PREFIX) :].split("-", 1)[0] if name.startswith(PREFIX) else ""
            if owner.isdigit() and not _alive(int(owner)):
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(parent, name))  # fails while it holds a process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ReplCgroup:
    """One REPL's cgroup (one directory per v1 hierarchy, one in v2), limits set."""

    version: int
    directories: dict[str, str]
    memory_mb: int
    pids_max: int
    removed: bool = field(default=False)
    swap_limited: bool = field(default=False)  # v2: memory.swap.max written (absent without swap accounting)

    @property
    def join_files(self) -> list[str]:
        """The cgroup.procs files the REPL writes its pid to (stage 1, first step)."""
        return [os.path.join(d, "cgroup.procs") for d in dict.fromkeys(self.directories.values())]

    def report(self) -> str:
        parts = [
            f"memory {self.memory_mb} MiB" + (", swap 0" if self.version == 2 and self.swap_limited else "")
        ]
        parts.append(f"pids {self.pids_max}" if "pids" in self.directories else "pids not mounted")
        return f"v{self.version} " + ", ".join(parts)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for procs in self.join_files:
            found.update(int(p) for p in _read(procs).split() if p.isdigit())
        return sorted(found)

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for going over the memory limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in _read(os.path.join(self.directories["memory"], name)).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self, wait_s: float = 2.0) -> bool:
        """Kill whatever is still inside, then remove the directories; True once all are gone."""
        if self.removed:
            return True
        deadline = time.monotonic() + wait_s
        for directory in dict.fromkeys(self.directories.values()):
            kill_file = os.path.join(directory, "cgroup.kill")
            while os.path.isdir(directory):
                if os.path.exists(kill_file):
                    with contextlib.suppress(OSError):
                        _write(kill_file, "1")
                for pid in self.pids():
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.01)  # tasks that were just killed leave the cgroup shortly
        self.removed = True
        return True


def create(memory_mb: int, pids_max: int) -> ReplCgroup:
    """A new cgroup for one REPL with its limits set; CgroupUnavailable(reason) if there is none."""
    site = site_of_this_process()
    name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
    cgroup = ReplCgroup(site.version, {}, memory_mb, pids_max)
    try:
        for controller, parent in site.parents.items():
            directory = os.path.join(parent, name)
            if directory not in cgroup.directories.values():
                os.mkdir(directory, 0o755)
            cgroup.directories[controller] = directory
        _limit(cgroup)
    except OSError as exc:
        cgroup.remove(0.0)
        raise CgroupUnavailable(f"v{site.version}, could not set up a cgroup: {exc}") from None
    return cgroup


def _limit(cgroup: ReplCgroup) -> None:
    memory = cgroup.directories["memory"]
    size = str(cgroup.memory_mb * _MB)
    if cgroup.version == 2:
        files = [("memory.max", size), ("memory.swap.max", "0")]
    else:
        # memsw (memory + swap) must be set after the memory limit and be at least as large.
        files = [("memory.limit_in_bytes", size), ("memory.memsw.limit_in_bytes", size)]
    written = []
    for name, value in files:
        path = os.path.join(memory, name)
        if name.startswith("memory.memsw") or name == "memory.swap.max":
            if not os.path.exists(path):
                continue  # no swap accounting in this kernel
        _write(path, value)
        written.append(path)
        cgroup.swap_limited |= name == "memory.swap.max"
    if "pids" in cgroup.directories:
        path = os.path.join(cgroup.directories["pids"], "pids.max")
        _write(path, str(cgroup.pids_max))
        written.append(path)
    for path in written:
        os.chmod(path, 0o444)  # the REPL (no capabilities) cannot write them even if it could reach them


def join(files: list[str]) -> None:
    """Move this process into the REPL's cgroup (stage 1, before anything else)."""
    pid = str(os.getpid())
    for path in files:
        _write(path, pid)
