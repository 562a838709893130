"""The sandboxed RLM REPL: escape attempts end as errors the model sees; the REPL keeps working."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
from pathlib import Path

import pytest

from composite_cli.sandbox import (
    ExecResult,
    Sandbox,
    SandboxDead,
    SandboxLimits,
    SandboxVariableError,
)
from composite_cli.sandbox import process as sandbox_process

FAST = SandboxLimits(timeout_s=1.0, cpu_s=5.0, total_timeout_s=5.0, interrupt_grace_s=0.5)
SECRET = "sk-test-0123456789abcdefSECRET"
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the sandbox needs Linux")


async def upper(prompts: list[str]) -> list[str]:
    return [p.upper() for p in prompts]


@pytest.fixture
async def sandbox():
    sb = Sandbox(limits=FAST, on_llm_query=upper)
    await sb.start({"context": "hello world", "context_length": 11})
    yield sb
    await sb.close()


def processes_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` or that are in process group `pid` (other than `pid`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid or int(fields[2]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def assert_refused(result: ExecResult, *words: str) -> None:
    assert result.error is not None, result
    for word in words:
        assert word in result.error, result.error


# -- escape attempts -----------------------------------------------------------------------------


async def test_environment_has_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("LITELLM_MASTER_KEY", SECRET)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", SECRET)
    async with Sandbox(limits=FAST) as sb:
        await sb.start({})
        result = await sb.execute("import os\nprint(os.environ.get('OPENAI_API_KEY'))\nsorted(os.environ)")
        assert result.error is None
        assert result.output.splitlines()[0] == "None"
        assert SECRET not in result.output
        assert "OPENAI_API_KEY" not in result.output and "TOKEN" not in result.output
        # The kernel's view of the child's environment, read from the parent.
        assert sb.pid is not None
        assert SECRET.encode() not in Path(f"/proc/{sb.pid}/environ").read_bytes()
        # The child itself may not even look.
        result = await sb.execute("print(open('/proc/self/environ', 'rb').read())")
        assert_refused(result, "PermissionError")
        assert SECRET not in result.output


async def test_tcp_connection_to_loopback_fails(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        result = await sandbox.execute(
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.send(b'hi')"
        )
        assert_refused(result, "PermissionError", "network")
        # The lower-level door is closed too.
        result = await sandbox.execute(f"import _socket\n_socket.socket().connect(('127.0.0.1', {port}))")
        assert_refused(result, "PermissionError")
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert (await sandbox.execute("print(1 + 1)")).output == "2\n"


async def test_writing_outside_the_workdir_fails(sandbox):
    target = Path("/tmp/escaped")
    target.unlink(missing_ok=True)
    result = await sandbox.execute("open('/tmp/escaped', 'w').write('x')")
    assert_refused(result, "PermissionError", "writing outside")
    result = await sandbox.execute(
        "import os\nos.symlink('/tmp/escaped', 'link')\nopen('link', 'w').write('x')"
    )
    assert_refused(result, "PermissionError")
    result = await sandbox.execute("import shutil\nshutil.copyfile('/dev/null', '/tmp/escaped')")
    assert_refused(result, "PermissionError")
    assert not target.exists()
    # Inside the working directory is fine.
    result = await sandbox.execute("open('notes.txt', 'w').write('kept')\nprint(open('notes.txt').read())")
    assert result.error is None and result.output == "kept\n"
    assert sandbox.workdir is not None
    assert (Path(sandbox.workdir) / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\nsubprocess.run(['echo', 'hi'])",
        "import os\nos.system('echo hi')",
        "import os\nos.execv('/bin/echo', ['echo', 'hi'])",
        "import os\nos.posix_spawn('/bin/echo', ['echo'], {})",
    ],
)
async def test_starting_programs_fails(sandbox, code):
    result = await sandbox.execute(code)
    assert_refused(result, "PermissionError")
    assert "hi" not in result.output
    assert (await sandbox.execute("context_length")).output == "11\n"


async def test_infinite_loop_is_interrupted_within_the_timeout(sandbox):
    await sandbox.execute("kept = 42")
    result = await sandbox.execute("while True: pass")  # how soon: benchmarks/responsiveness.py
    assert_refused(result, "TimeoutError", "1 s", "line 1")
    assert result.limit == "timeout" and not result.killed
    assert (await sandbox.execute("kept")).output == "42\n"


async def test_loop_that_ignores_interrupts_is_killed_and_restarted(sandbox):
    await sandbox.execute("lost = 1")
    old_pid = sandbox.pid
    assert old_pid is not None
    result = await sandbox.execute(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    )
    assert result.killed and result.limit == "timeout"
    assert_refused(result, "TimeoutError", "did not stop", "fresh REPL", "context")
    assert not alive(old_pid)
    # The next execution gets a fresh process with the initial variables.
    result = await sandbox.execute("print(context, context_length)\nlost")
    assert result.output == "hello world 11\n"
    assert_refused(result, "NameError")
    assert sandbox.pid != old_pid


async def test_cpu_limit_per_execution():
    limits = SandboxLimits(timeout_s=10, cpu_s=0.5, interrupt_grace_s=0.5)
    async with Sandbox(limits=limits) as sb:
        await sb.start({})
        result = await sb.execute("x = 0\nwhile True: x += 1")
        assert result.limit == "cpu"  # the 0.5 s CPU limit, not the 10 s timeout
        assert_refused(result, "CPU time")


async def test_allocating_8_gib_fails(sandbox):
    result = await sandbox.execute("x = bytearray(8 * 1024**3)")
    assert result.error is not None
    assert "MemoryError" in result.error or result.killed
    assert (await sandbox.execute("print(len(context))")).output == "11\n"


async def test_fork_bomb_is_contained(sandbox):
    pid = sandbox.pid
    assert pid is not None
    result = await sandbox.execute("import os\nwhile True: os.fork()")
    assert_refused(result, "PermissionError")
    assert processes_of(pid) == []
    result = await sandbox.execute("import os\nos.fork() or os._exit(0)")
    assert result.error is not None
    assert processes_of(pid) == []
    # Threads cannot be started either (no clone at all).
    result = await sandbox.execute("import threading\nthreading.Thread(target=print).start()")
    assert result.error is not None
    assert processes_of(pid) == []


async def test_deep_recursion_is_a_recursion_error_and_the_repl_keeps_its_state(sandbox):
    await sandbox.execute("kept = 42")
    # A million frames used to take minutes to format (a "did not stop when interrupted" kill),
    # and C recursion that deep crashed the process (SIGSEGV): both lost the variables.
    for code in (
        "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1)\nf(0)",
        "import json, sys\nsys.setrecursionlimit(10**6)\njson.loads('[' * 1_000_000)",
    ):
        result = await sandbox.execute(code)
        assert not result.killed and result.limit is None, result.error
        assert_refused(result, "RecursionError", "recursion limit is")
        assert len(result.error or "") < FAST.max_error_chars + 100
        assert (await sandbox.execute("kept")).output == "42\n"


async def test_printing_100_mb_is_truncated(sandbox):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await sandbox.execute("print('x' * 100_000_000)")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.error is None and result.truncated
    assert result.output.startswith("x" * FAST.max_output_chars + "\n[... truncated ")
    assert result.output.endswith(f"[... truncated {100_000_001 - FAST.max_output_chars} chars]")
    assert len(result.output) < FAST.max_output_chars + 100
    assert after - before < 50 * 1024  # KiB: the 100 MB never reached the parent


@pytest.mark.parametrize(
    "code",
    [
        "import ctypes",
        "import importlib\nimportlib.import_module('_ctypes')",
        "import gc\ngc.get_objects()",
        "import marshal\nmarshal.loads(marshal.dumps(1))",
        "(lambda: 0).__code__.replace(co_consts=(1,))",
        "import sqlite3",
        "import os\nos.kill(1, 0)",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
        "open('/etc/passwd').read()",
        f"open({str(Path(__file__).resolve())!r}).read()",
    ],
)
async def test_other_doors_are_closed(sandbox, code):
    result = await sandbox.execute(code)
    assert result.error is not None
    assert "PermissionError" in result.error or "ImportError" in result.error, result.error
    assert not result.killed


async def test_model_code_cannot_add_audit_hooks(sandbox):
    # CPython silently drops a hook that an existing hook refuses.
    result = await sandbox.execute(
        "import sys\nsys.addaudithook(lambda e, a: print('HOOKED', e))\nopen('f', 'w').close()"
    )
    assert result.error is None and "HOOKED" not in result.output


async def test_forged_channel_messages_kill_the_repl(sandbox):
    old_pid = sandbox.pid
    result = await sandbox.execute(
        "import os\nos.write(3, b'\\x00\\x00\\x00\\x05hello')\nimport time\ntime.sleep(2)"
    )
    assert result.killed and "SandboxProtocolError" in (result.error or "")
    assert not alive(old_pid or 0)
    assert (await sandbox.execute("print(context_length)")).output == "11\n"
    forged = json.dumps({"type": "result", "id": 12345, "output": "forged"}).encode()
    code = f"import os, struct\nbody = {forged!r}\nos.write(3, struct.pack('>I', len(body)) + body)\ntime = 1"
    result = await sandbox.execute(code)
    assert result.killed and "forged" not in result.output


async def test_reading_the_standard_library_is_allowed(sandbox):
    result = await sandbox.execute(
        "import json, os\nprint(open(json.__file__).read(9))\nlen(os.listdir('.'))"
    )
    assert result.error is None, result.error
    assert result.output.startswith('r"""JSON') or result.output.startswith('"""JSON')


async def test_kernel_layers_hold_without_the_audit_hook(tmp_path):
    """Run the real stage 1 with a stage 2 that installs no audit hook and tries to escape."""
    limits = SandboxLimits()
    async with Sandbox(limits=limits) as sb:
        await sb.start({})
        layers = sb.isolation
    if any(layers.get(k, "unavailable").startswith("unavailable") for k in ("network", "files", "syscalls")):
        pytest.skip(f"kernel layers unavailable here: {layers}")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    probe = f"""
import os, socket
def attempt(f):
    try:
        f()
        return "ALLOWED"
    except OSError as exc:
        return type(exc).__name__
print({{
    "tcp": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1)),
    "fork": attempt(lambda: os.fork() or os._exit(0)),
    "write": attempt(lambda: open("{tmp_path}/escaped", "w")),
    "read": attempt(lambda: open("{Path(__file__).resolve()}").read()),
    "signal": attempt(lambda: os.kill(os.getppid(), 0)),
}}, flush=True)
"""
    left, right = socket.socketpair()
    workdir = str(tmp_path / "probe-workdir")
    os.mkdir(workdir)
    python = sandbox_process.python_executable()
    config = sandbox_process._confine_config(limits, workdir, right.fileno(), python)
    config["bootstrap"] = probe
    proc = await asyncio.create_subprocess_exec(
        python,
        *sandbox_process.PYTHON_FLAGS,
        "-c",
        sandbox_process._bootstrap("confine"),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        env=sandbox_process.child_environment(workdir),
        cwd=workdir,
        pass_fds=(right.fileno(),),
        start_new_session=True,
    )
    right.close()
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    left.close()
    server.close()
    report = eval(out.decode())  # the probe printed a dict of str
    assert "ALLOWED" not in report.values(), report
    assert not (tmp_path / "escaped").exists()


# -- the REPL itself -----------------------------------------------------------------------------


async def test_variables_persist_between_executions(sandbox):
    assert (await sandbox.execute("a = 20\ndef double(x):\n    return 2 * x")).error is None
    result = await sandbox.execute("b = double(a) + 2\nb")
    assert result == ExecResult("42\n", None, result.duration_s, False, False)


async def test_two_megabyte_context():
    context = "abcdefghij" * 200_000
    async with Sandbox(limits=FAST) as sb:
        await sb.start({"context": context, "context_length": len(context), "meta": {"k": [1, 2]}})
        result = await sb.execute("print(len(context), context_length, context[-3:], meta['k'])")
        assert result.output == "2000000 2000000 hij [1, 2]\n"


async def test_llm_query_round_trip():
    calls: list[list[str]] = []

    async def answer(prompts: list[str]) -> list[str]:
        calls.append(prompts)
        await asyncio.sleep(0)
        return [f"answer to {p}" for p in prompts]

    async with Sandbox(limits=FAST, on_llm_query=answer) as sb:
        await sb.start({"context": "abc"})
        result = await sb.execute("r = llm_query('summarize ' + context)\nprint(r)")
        assert result.output == "answer to summarize abc\n" and result.error is None
        assert calls == [["summarize abc"]]


async def test_llm_query_batched_is_one_callback_with_all_prompts():
    calls: list[list[str]] = []

    async def answer(prompts: list[str]) -> list[str]:
        calls.append(prompts)
        return [p[::-1] for p in prompts]

    async with Sandbox(limits=FAST, on_llm_query=answer) as sb:
        await sb.start({})
        result = await sb.execute("print(llm_query_batched(['ab', 'cd', 'ef']))\nllm_query_batched([])")
        assert result.output == "['ba', 'dc', 'fe']\n[]\n"
        assert calls == [["ab", "cd", "ef"]]


async def test_callback_error_is_an_exception_in_the_repl():
    async def failing(prompts: list[str]) -> list[str]:
        raise RuntimeError(f"rate limited for key {SECRET}")

    async with Sandbox(limits=FAST, on_llm_query=failing) as sb:
        await sb.start({})
        result = await sb.execute("llm_query('hi')")
        assert_refused(result, "LLMQueryError", "RuntimeError: rate limited")
        assert SECRET not in (result.error or "")
        result = await sb.execute(
            "try:\n    llm_query('hi')\nexcept LLMQueryError as e:\n    print('caught')"
        )
        assert result.output == "caught\n" and result.error is None


async def test_waiting_for_answers_does_not_count_against_the_timeout():
    async def slow(prompts: list[str]) -> list[str]:
        await asyncio.sleep(0.4)
        return ["ok"] * len(prompts)

    async with Sandbox(limits=FAST, on_llm_query=slow) as sb:
        await sb.start({})
        result = await sb.execute("print([llm_query(str(i)) for i in range(4)])")
        assert result.error is None and result.duration_s > FAST.timeout_s


async def test_total_timeout_cuts_a_hanging_callback():
    async def hang(prompts: list[str]) -> list[str]:
        await asyncio.sleep(60)
        return ["never"]

    limits = SandboxLimits(timeout_s=1, total_timeout_s=1, interrupt_grace_s=0.5)
    async with Sandbox(limits=limits, on_llm_query=hang) as sb:
        await sb.start({})
        result = await sb.execute("x = 5\nllm_query('hi')")  # the callback would take 60 s
        assert result.limit == "total_timeout" and not result.killed
        assert_refused(result, "TimeoutError")
        assert (await sb.execute("x")).output == "5\n"


async def test_rlm_query():
    async def sub_rlm(prompt: str, context: str) -> str:
        return f"{prompt}:{len(context)}"

    async with Sandbox(limits=FAST, on_rlm_query=sub_rlm) as sb:
        await sb.start({"context": "abcdef"})
        assert (await sb.execute("rlm_query('count', context[:3])")).output == "'count:3'\n"
        result = await sb.execute("llm_query('x')")
        assert_refused(result, "NameError")


async def test_get_variable(sandbox):
    await sandbox.execute(
        "answer = {'a': 1}\nclass Loop:\n    def __str__(self):\n        while True: pass\nloop = Loop()"
    )
    assert await sandbox.get_variable("answer") == "{'a': 1}"
    assert await sandbox.get_variable("context") == "hello world"
    with pytest.raises(SandboxVariableError, match="no REPL variable named 'missing'"):
        await sandbox.get_variable("missing")
    with pytest.raises(SandboxVariableError, match="interrupted"):
        await sandbox.get_variable("loop")
    assert await sandbox.get_variable("answer") == "{'a': 1}"


async def test_close_kills_everything_and_removes_the_workdir():
    sb = Sandbox(limits=FAST)
    await sb.start({"context": "x"})
    pid, workdir = sb.pid, sb.workdir
    assert pid is not None and workdir is not None and Path(workdir).is_dir()
    await sb.close()
    assert not alive(pid)
    assert processes_of(pid) == []
    assert not Path(workdir).exists()
    await sb.close()  # idempotent
    with pytest.raises(SandboxDead):
        await sb.execute("print(1)")


async def test_cancelled_execution_kills_the_repl(sandbox):
    old_pid = sandbox.pid
    task = asyncio.create_task(sandbox.execute("import time\ntime.sleep(60)"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(old_pid or 0)
    assert (await sandbox.execute("context_length")).output == "11\n"


async def test_restarts_are_limited():
    async with Sandbox(limits=SandboxLimits(max_restarts=0)) as sb:
        await sb.start({})
        result = await sb.execute("import os\nos._exit(3)")
        assert result.killed
        assert_refused(result, "exited with status 3", "will not be restarted")
        with pytest.raises(SandboxDead):
            await sb.execute("print(1)")


async def test_syntax_error_is_an_error_result(sandbox):
    result = await sandbox.execute("def broken(:\n    pass")
    assert result.output == "" and not result.killed
    assert_refused(result, "SyntaxError", "line 1")
    assert (await sandbox.execute("print('still fine')")).output == "still fine\n"


async def test_truncation_is_per_execution(sandbox):
    first = await sandbox.execute("for i in range(5000):\n    print(i)")
    assert first.truncated and "[... truncated" in first.output
    second = await sandbox.execute("print('short')")
    assert not second.truncated and second.output == "short\n"
    assert second.for_model() == "short"


async def test_stderr_and_stdout_are_interleaved(sandbox):
    result = await sandbox.execute("import sys\nprint('a')\nprint('b', file=sys.stderr)\nprint('c')")
    assert result.output == "a\nb\nc\n"


async def test_isolation_report_and_strict_mode():
    async with Sandbox(limits=FAST) as sb:
        await sb.start({})
        layers = dict(sb.isolation)
    assert layers["audit hook"] == "installed"
    assert {"network", "files", "syscalls", "capabilities"} <= set(layers)
    if any(layers[k].startswith("unavailable") for k in ("network", "files", "syscalls")):
        return
    async with Sandbox(limits=SandboxLimits(require_kernel_isolation=True)) as sb:
        await sb.start({})
        assert (await sb.execute("print('strict')")).output == "strict\n"


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
