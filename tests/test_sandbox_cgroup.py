"""The REPL's cgroup layer: detection (against fake /proc text and cgroup trees), and on this
machine, where a cgroup is writable, the real thing: limits set, joined before model code,
enforced (memory the tmpfs holds, tasks), out of the REPL's reach, and removed on every exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_sandbox_kernel import run_confined

from composite_cli.sandbox import Sandbox, SandboxLimits, cgroup
from composite_cli.sandbox import process as sandbox_process

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="cgroups are Linux only")

MiB = 1024 * 1024


# -- detection, against fake text and trees -------------------------------------------------------


def _mountinfo(*mounts: tuple[str, str, str, str]) -> str:
    """mountinfo lines for (mount point, mount root, fstype, super options)."""
    lines = ["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"]
    for n, (point, root, fstype, options) in enumerate(mounts):
        lines.append(f"{30 + n} 22 0:{40 + n} {root} {point} rw,relatime - {fstype} {fstype} {options}")
    return "\n".join(lines) + "\n"


def _v2_tree(tmp_path: Path, path: str, controllers: str, subtree: str = "", procs: str = "4242\n") -> Path:
    here = tmp_path / "cg2" / path.strip("/")
    here.mkdir(parents=True, exist_ok=True)
    (here / "cgroup.controllers").write_text(controllers + "\n")
    (here / "cgroup.subtree_control").write_text(subtree + "\n")
    (here / "cgroup.procs").write_text(procs)
    return here


def _v2_mount(tmp_path: Path) -> str:
    return _mountinfo((str(tmp_path / "cg2"), "/", "cgroup2", "rw,nsdelegate"))


def test_v2_delegated_moves_the_parent_into_a_leaf_and_enables_the_controllers(tmp_path):
    path = "/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope"
    here = _v2_tree(tmp_path, path, "cpu memory pids")
    site = cgroup.detect(_v2_mount(tmp_path), f"0::{path}\n", pid=4242, writable=lambda p: True)
    assert site.version == 2
    assert site.parents == {"memory": str(here), "pids": str(here)}
    assert site.self_leaf == str(here / "composite-parent-4242")
    assert site.enable == ("memory", "pids")
    prepared = cgroup.prepare(site)
    assert (here / "composite-parent-4242" / "cgroup.procs").read_text() == str(os.getpid())
    assert (here / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert prepared == cgroup.Site(2, site.parents)


def test_v2_with_the_controllers_already_enabled_needs_no_leaf(tmp_path):
    path = "/composite.slice"
    here = _v2_tree(tmp_path, path, "memory pids", subtree="memory pids", procs="")
    site = cgroup.detect(_v2_mount(tmp_path), f"0::{path}\n", pid=4242, writable=lambda p: True)
    assert site == cgroup.Site(2, {"memory": str(here), "pids": str(here)})


def test_v2_root_cgroup_may_hold_processes(tmp_path):
    here = _v2_tree(tmp_path, "/", "memory pids io", procs="1\n2\n4242\n")
    site = cgroup.detect(_v2_mount(tmp_path), "0::/\n", pid=4242, writable=lambda p: True)
    assert site.self_leaf == "" and site.enable == ("memory", "pids")
    assert site.parents["memory"] == str(here)


def test_v2_memory_controller_not_delegated(tmp_path):
    _v2_tree(tmp_path, "/user.slice/u.scope", "cpu pids")
    with pytest.raises(
        cgroup.CgroupUnavailable, match=r"^v2, memory controller not delegated to /user.slice/u.scope$"
    ):
        cgroup.detect(_v2_mount(tmp_path), "0::/user.slice/u.scope\n", pid=4242, writable=lambda p: True)


def test_v2_not_writable(tmp_path):
    _v2_tree(tmp_path, "/system.slice/x.service", "memory pids")
    with pytest.raises(cgroup.CgroupUnavailable, match=r"^v2, /system.slice/x.service not writable$"):
        cgroup.detect(_v2_mount(tmp_path), "0::/system.slice/x.service\n", pid=4242, writable=lambda p: False)


def test_v2_shared_with_other_processes_is_left_alone(tmp_path):
    _v2_tree(tmp_path, "/app.scope", "memory pids", procs="4242\n4243\n")
    with pytest.raises(cgroup.CgroupUnavailable, match="holds other processes"):
        cgroup.detect(_v2_mount(tmp_path), "0::/app.scope\n", pid=4242, writable=lambda p: True)


def test_v2_in_a_cgroup_namespace_maps_the_path_under_the_mount_root(tmp_path):
    # The mount shows /docker/abc as its root; our path inside is /docker/abc/inner.
    here = _v2_tree(tmp_path, "/inner", "memory pids", subtree="memory pids", procs="")
    info = _mountinfo((str(tmp_path / "cg2"), "/docker/abc", "cgroup2", "rw"))
    site = cgroup.detect(info, "0::/docker/abc/inner\n", pid=1, writable=lambda p: True)
    assert site.parents["pids"] == str(here)
    with pytest.raises(cgroup.CgroupUnavailable, match="not under a cgroup2 mount"):
        cgroup.detect(info, "0::/elsewhere\n", pid=1, writable=lambda p: True)


_V1_CGROUP = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/31a0\n1:cpu,cpuacct:/\n0::/\n"


def _v1_mounts(base: str) -> str:
    return _mountinfo(
        (f"{base}/memory", "/", "cgroup", "rw,memory"),
        (f"{base}/pids", "/", "cgroup", "rw,pids"),
        (f"{base}/cpu,cpuacct", "/", "cgroup", "rw,cpu,cpuacct"),
        (f"{base}/unified", "/", "cgroup2", "rw"),  # hybrid: v2 with no controllers
    )


def test_v1_memory_and_pids_hierarchies(tmp_path):
    base = str(tmp_path)
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("\n")
    site = cgroup.detect(_v1_mounts(base), _V1_CGROUP, pid=4242, writable=lambda p: True)
    assert site == cgroup.Site(1, {"memory": f"{base}/memory/process_api/31a0", "pids": f"{base}/pids"})


def test_v1_not_writable_says_which(tmp_path):
    base = str(tmp_path)
    with pytest.raises(cgroup.CgroupUnavailable) as caught:
        cgroup.detect(_v1_mounts(base), _V1_CGROUP, pid=4242, writable=lambda p: False)
    assert "v1, memory /process_api/31a0 not writable; pids / not writable" in str(caught.value)
    assert "v2, memory and pids controller not delegated to /" in str(caught.value)


def test_v1_without_pids_uses_memory_only(tmp_path):
    info = _mountinfo((f"{tmp_path}/memory", "/", "cgroup", "rw,memory"))
    site = cgroup.detect(info, "4:memory:/a\n", pid=1, writable=lambda p: True)
    assert site == cgroup.Site(1, {"memory": f"{tmp_path}/memory/a"})
    assert cgroup.ReplCgroup(1, {"memory": "x"}, 256, 64).report() == "v1 memory 256 MiB, pids not mounted"
    both = {"memory": "x", "pids": "x"}
    assert (
        cgroup.ReplCgroup(2, both, 256, 64, swap_limited=True).report()
        == "v2 memory 256 MiB, swap 0, pids 64"
    )
    assert cgroup.ReplCgroup(2, both, 256, 64).report() == "v2 memory 256 MiB, pids 64"


@pytest.mark.parametrize("version", [1, 2])
def test_limits_are_written_and_made_read_only(tmp_path, version):
    here = tmp_path / "repl"
    here.mkdir()
    swap = "memory.swap.max" if version == 2 else "memory.memsw.limit_in_bytes"
    (here / swap).write_text("max\n")  # present only with swap accounting
    group = cgroup.ReplCgroup(version, {"memory": str(here), "pids": str(here)}, 256, 32)
    cgroup._limit(group)
    memory = "memory.max" if version == 2 else "memory.limit_in_bytes"
    expected = {memory: str(256 * MiB), swap: "0" if version == 2 else str(256 * MiB), "pids.max": "32"}
    assert {p.name: p.read_text() for p in here.iterdir()} == expected
    assert {oct(p.stat().st_mode & 0o777) for p in here.iterdir()} == {"0o444"}
    assert group.report() == f"v{version} memory 256 MiB{', swap 0' if version == 2 else ''}, pids 32"


def test_no_cgroup_filesystem():
    with pytest.raises(cgroup.CgroupUnavailable, match=r"^no cgroup filesystem$"):
        cgroup.detect(_mountinfo(), "0::/\n", pid=1, writable=lambda p: True)


def test_malformed_proc_text_is_skipped():
    assert cgroup.parse_mountinfo("garbage\n1 2 3\n - cgroup\n") == []
    assert cgroup.parse_proc_cgroup("x:y:z\n4:memory:relative\n\n3:pids:/p\n") == {"pids": "/p"}
    [mount] = cgroup.parse_mountinfo(_mountinfo(("/sys/fs/cgroup/with\\040space", "/", "cgroup2", "rw")))
    assert mount.point == "/sys/fs/cgroup/with space"


# -- on this machine --------------------------------------------------------------------------


def _site_here() -> cgroup.Site:
    try:
        return cgroup.site_of_this_process()
    except cgroup.CgroupUnavailable as exc:
        pytest.skip(f"no writable cgroup on this machine: {exc}")


def _limit_files(group: cgroup.ReplCgroup) -> dict[str, str]:
    out = {}
    for directory in set(group.directories.values()):
        for name in ("memory.max", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "pids.max"):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                out[name] = Path(path).read_text().strip()
    return out


def _memory_limit(group: cgroup.ReplCgroup) -> int:
    files = _limit_files(group)
    return int(files.get("memory.max") or files["memory.limit_in_bytes"])


async def test_the_repl_runs_in_its_own_limited_cgroup_removed_on_close():
    site = _site_here()
    async with Sandbox(limits=SandboxLimits(timeout_s=5, memory_mb=300, max_pids=20)) as sb:
        await sb.start({})
        group = sb._child.cgroup if sb._child else None
        assert group is not None
        layer = sb.isolation["cgroup"]
        swap_file = os.path.join(group.directories["memory"], "memory.swap.max")
        swap = ", swap 0" if site.version == 2 and os.path.exists(swap_file) else ""
        assert layer == f"v{site.version} memory 300 MiB{swap}, pids 20"
        assert _memory_limit(group) == 300 * MiB
        if "pids" in group.directories:
            assert _limit_files(group)["pids.max"] == "20"
        assert group.pids() == [sb.pid]  # joined before the first execution
        for directory in group.directories.values():
            name = os.path.basename(directory)
            assert name == f"composite-repl-{os.getpid()}-{name.rsplit('-', 1)[1]}"
            assert os.path.isdir(directory)
        directories = list(group.directories.values())
    assert not [d for d in directories if os.path.exists(d)]


async def test_the_cgroup_is_removed_after_a_timeout_kill_and_the_next_repl_gets_a_new_one():
    _site_here()
    limits = SandboxLimits(timeout_s=0.5, interrupt_grace_s=0.3)
    async with Sandbox(limits=limits) as sb:
        await sb.start({})
        assert sb._child is not None and sb._child.cgroup is not None
        first = list(sb._child.cgroup.directories.values())
        result = await sb.execute(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
        )
        assert result.killed and result.limit == "timeout"
        assert not [d for d in first if os.path.exists(d)]
        assert (await sb.execute("print(2)")).output == "2\n"
        second = list(sb._child.cgroup.directories.values())
        assert set(second).isdisjoint(first) and all(os.path.isdir(d) for d in second)
    assert not [d for d in second if os.path.exists(d)]


async def test_memory_that_rlimit_as_does_not_see_is_stopped_by_the_cgroup():
    """Files in the REPL's tmpfs are memory outside its address space: together with a
    bytearray they exceed the limit while RLIMIT_AS (same number) is never reached."""
    _site_here()
    limits = SandboxLimits(timeout_s=20, memory_mb=256, max_disk_mb=200, max_file_mb=64)
    async with Sandbox(limits=limits) as sb:
        await sb.start({})
        if not sb.isolation["disk"].startswith("private tmpfs"):
            pytest.skip(f"no private tmpfs here: {sb.isolation['disk']}")
        code = (
            "for i in range(3):\n"
            "    open(f'big{i}', 'wb').write(b'x' * (60 * 2**20))\n"
            "held = bytearray(150 * 2**20)\n"
            "held[::4096] = b'y' * len(held[::4096])\n"
            "print('NOT STOPPED')"
        )
        result = await sb.execute(code)
        assert "NOT STOPPED" not in result.output
        assert result.killed, result.error
        assert "going over its memory limit (256 MB" in (result.error or "")
        assert (await sb.execute("print('fresh')")).output == "fresh\n"  # the parent and sandbox are fine


def test_a_thread_bomb_stops_at_pids_max_and_the_parent_is_unharmed(tmp_path):
    """Inside the sandbox seccomp refuses every new task; the cgroup holds on its own too: a
    process that joins a REPL cgroup (as stage 1 does) and starts threads stops at pids.max."""
    site = _site_here()
    if "pids" not in site.parents:
        pytest.skip("no pids hierarchy here")
    group = cgroup.create(256, 8)
    try:
        bomb = textwrap.dedent(
            f"""
            import sys, threading, time, types
            sys.path.insert(0, {sandbox_process.PACKAGE_ROOT!r})
            from composite_cli.sandbox.cgroup import join
            join({group.join_files!r})
            started = 0
            try:
                for _ in range(1000):
                    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
                    started += 1
            except RuntimeError:
                pass
            print(started, flush=True)
            import os
            os._exit(0)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", bomb], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert int(proc.stdout.split()[-1]) == 7  # 8 tasks: the main thread and 7 more
        # The parent (this test) still starts threads and processes.
        assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True).stdout
    finally:
        assert group.remove()
    assert not [d for d in group.directories.values() if os.path.exists(d)]


def test_remove_kills_what_is_still_inside_and_leaves_nothing():
    """Close removes the cgroup even if a process in it outlived the process-group kill."""
    _site_here()
    group = cgroup.create(256, 8)
    code = (
        f"import sys; sys.path.insert(0, {sandbox_process.PACKAGE_ROOT!r})\n"
        "from composite_cli.sandbox.cgroup import join\n"
        f"join({group.join_files!r})\n"
        "print('in', flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "in\n"
        assert group.pids() == [proc.pid]
        assert group.remove()
        assert proc.wait(timeout=10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [d for d in group.directories.values() if os.path.exists(d)]


def test_model_code_cannot_change_or_leave_its_cgroup_even_without_the_audit_hook(tmp_path):
    site = _site_here()
    group = cgroup.create(300, 16)
    parent_procs = [os.path.join(p, "cgroup.procs") for p in set(site.parents.values())]
    limit_files = [
        os.path.join(d, name)
        for d in set(group.directories.values())
        for name in ("memory.max", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "pids.max")
        if os.path.exists(os.path.join(d, name))
    ]
    own_dirs = list(set(group.directories.values()))
    code = f"""
    def attempt(name, f):
        try:
            f()
            result[name] = "ALLOWED"
        except OSError as exc:
            result[name] = type(exc).__name__
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)
    for path in {limit_files!r}:
        attempt("raise " + path, lambda: write(path, "max"))
        attempt("chmod " + path, lambda: os.chmod(path, 0o666))
    for path in {group.join_files!r}:
        attempt("rejoin " + path, lambda: write(path, str(os.getpid())))
    for path in {parent_procs!r}:
        attempt("leave to " + path, lambda: write(path, str(os.getpid())))
    for path in {own_dirs!r}:
        attempt("sub-cgroup in " + path, lambda: os.mkdir(os.path.join(path, "escape")))
        attempt("remove " + path, lambda: os.rmdir(path))
    """
    try:
        report = run_confined(tmp_path, code, SandboxLimits(), group)
        assert report["layers"]["cgroup"] == group.report()
        result = report["result"]
        allowed = {k: v for k, v in result.items() if v == "ALLOWED"}
        assert not allowed, result
        assert len(result) == 2 * len(limit_files) + len(group.join_files) + len(parent_procs) + 2 * len(
            own_dirs
        )
        for directory in own_dirs:
            assert not os.path.exists(os.path.join(directory, "escape"))
        assert _memory_limit(group) == 300 * MiB
    finally:
        assert group.remove()


async def test_the_limits_hold_through_the_audit_hook_too():
    _site_here()
    async with Sandbox(limits=SandboxLimits(timeout_s=5, memory_mb=300)) as sb:
        await sb.start({})
        assert sb._child is not None and sb._child.cgroup is not None
        group = sb._child.cgroup
        target = os.path.join(group.directories["memory"], "cgroup.procs")
        result = await sb.execute(f"open({target!r}, 'w').write('1')")
        assert "PermissionError" in (result.error or "")
        assert _memory_limit(group) == 300 * MiB


def test_cgroups_left_by_a_dead_parent_are_removed(tmp_path):
    site = _site_here()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(dead.stdout)
    stale = [os.path.join(parent, f"composite-repl-{pid}-1") for parent in set(site.parents.values())]
    mine = [
        os.path.join(parent, f"composite-repl-{os.getpid()}-99999") for parent in set(site.parents.values())
    ]
    try:
        for path in stale + mine:
            os.mkdir(path)
        cgroup.remove_stale(site)
        assert not [p for p in stale if os.path.exists(p)]
        assert all(os.path.isdir(p) for p in mine)  # a live parent's cgroups stay
    finally:
        for path in stale + mine:
            if os.path.exists(path):
                os.rmdir(path)


# -- without a cgroup -------------------------------------------------------------------------


async def test_without_a_cgroup_the_sandbox_starts_and_says_why(monkeypatch):
    def unavailable(memory_mb: int, pids_max: int) -> cgroup.ReplCgroup:
        raise cgroup.CgroupUnavailable("v2, memory controller not delegated to /user.slice")

    monkeypatch.setattr(cgroup, "create", unavailable)
    limits = SandboxLimits(timeout_s=5, require_kernel_isolation=True)  # cgroups are not required
    async with Sandbox(limits=limits) as sb:
        await sb.start({})
        assert sb.isolation["cgroup"] == "unavailable (v2, memory controller not delegated to /user.slice)"
        assert (await sb.execute("print(3)")).output == "3\n"


def test_max_pids_is_validated():
    with pytest.raises(ValueError, match="max_pids"):
        SandboxLimits(max_pids=0)
