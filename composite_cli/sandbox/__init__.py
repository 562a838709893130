"""Sandboxed Python REPL for Recursive Language Models (the `rlm` step).

The root model writes ```repl blocks; `Sandbox.execute()` runs each in one persistent Python
process and returns the printed output (truncated) and the error, as the model should see them.
Inside, the code can call `llm_query(prompt)`, `llm_query_batched(prompts)` and, when enabled,
`rlm_query(prompt, context)`; each is a request to the parent, which runs the callback (and holds
the API keys) and sends the answer back.

    async with Sandbox(limits=SandboxLimits(timeout_s=30), on_llm_query=ask) as sandbox:
        await sandbox.start({"context": text, "context_length": len(text)})
        result = await sandbox.execute("print(len(context))")
        answer = await sandbox.get_variable("final")

What the REPL offers: the standard library (no asyncio event loop: it needs a socketpair),
a final bare expression is echoed like in the interactive interpreter, and stdout/stderr are
captured per execution. Limits (`SandboxLimits`): `timeout_s` counts the code's own running time
and excludes time spent waiting for llm_query answers; `total_timeout_s` bounds the whole
execution including those waits; `cpu_s` bounds CPU time per execution. When one is hit the code
gets a KeyboardInterrupt and the result says which limit (variables are kept); if it does not
stop within `interrupt_grace_s` the process group is killed (`ExecResult.killed`), and the next
`execute()` starts a fresh REPL with the initial variables, up to `max_restarts` times, after
which `execute()` raises `SandboxDead` so the run can stop cleanly.

See GUARANTEES for what the sandbox does and does not promise.
"""

from __future__ import annotations

from composite_cli.sandbox.errors import SandboxDead, SandboxError, SandboxStartError, SandboxVariableError
from composite_cli.sandbox.limits import SandboxLimits
from composite_cli.sandbox.sandbox import ExecResult, LlmQueryCallback, RlmQueryCallback, Sandbox

GUARANTEES = """\
The RLM sandbox (Linux only) runs model-written Python in a separate, persistent process,
confined in layers before any model code exists. The kernel layers are the boundary; they hold
even when the model's code has switched the Python layer off. A new network namespace with no
interfaces up, so nothing is reachable, not even loopback. A private mount namespace: the
working directory is a tmpfs of its own, capped in size and number of files (256 MiB and 4096
by default), and every other mount is read-only. Landlock rules that let the process read only
the interpreter, its standard library, the sandbox package and system libraries (no
site-packages), write only its working directory, and (on recent kernels) make no TCP
connections and signal no process outside the sandbox. A seccomp allow list: only the system
calls a Python REPL needs; calls that can reach another process (signals, prlimit64,
scheduling and priority) only on the REPL itself, and resource limits cannot be changed at all;
no processes or threads, no sockets but its channel, no ptrace, process_vm, pidfd or
memfd_create. No capabilities and no way to gain privileges; rlimits on memory (1 GiB by
default), CPU time, file size and open files. Where a cgroup is usable (v2 with the memory
and pids controllers delegated, or writable v1 memory and pids hierarchies), the REPL runs in a
cgroup of its own, joined before anything else and removed on close: its memory limit (the same
1 GiB) counts the files in its working directory too, swap adds nothing, and pids.max (64 by
default) bounds its processes and threads; it can neither change those limits nor leave (its
limit files are read-only to it, and /sys is read-only in its mount namespace and not granted by
Landlock). Python layer: an audit hook, installed first, refuses starting programs,
networking, ctypes and other native-code doors, writes outside the
working directory and reads outside the standard library, with a clear PermissionError: it
gives friendly errors, it is not the boundary. Nothing in Python refers to the hook once it is
installed and its tables are immutable, so model code cannot turn it off from Python (what
Python cannot prevent is listed in `composite_cli/sandbox/policy.py`). Deep recursion ends in a
RecursionError (the recursion limit is capped to fit the stack) and the REPL keeps its variables.
The process starts from a whitelisted environment, so API keys and tokens (which stay in the
parent) never reach it; its HOME and
working directory are an empty temporary directory, deleted on close. Its only link to the
parent is a unix socket made before the network was cut, over which it can only ask
llm_query/rlm_query questions: the parent treats every message as untrusted (size-capped,
schema-checked; anything unexpected kills the process). Each execution has a wall-clock limit
(time spent waiting for llm_query answers excluded), an overall limit including those waits, a
CPU limit and an output limit; a runaway execution is interrupted, and its whole process group
killed if it does not stop. `Sandbox.isolation` reports which layers took effect.

What it does not guarantee: it is not a virtual machine or a container. A Linux kernel
vulnerability, or a memory-corruption bug in CPython or a standard-library extension module,
can defeat it. The kernel layers are best effort: where namespaces, Landlock or seccomp are
unavailable (older kernels, some container runtimes) only what remains holds, and
`Sandbox.isolation` says so (`require_kernel_isolation` refuses to start in that case). Without
a mount namespace the disk is bounded per file only. Where no cgroup is usable (v2 without
delegation, a read-only cgroup filesystem) memory is bounded by RLIMIT_AS alone, which sees the
REPL's own allocations (memfd is refused) but not the files in its tmpfs, and `Sandbox.isolation`
says why; `require_kernel_isolation` does not require a cgroup. Model code can read the standard
library and learn harmless facts about the machine (CPU count, time, kernel version, the names
of installed packages, not their contents); it can use CPU, memory and disk up to its limits;
it can print anything, including text that imitates the parent's prompts; and it can make as
many llm_query calls as it likes: budgets for those belong to the caller's callback.
"""

__all__ = [
    "GUARANTEES",
    "ExecResult",
    "LlmQueryCallback",
    "RlmQueryCallback",
    "Sandbox",
    "SandboxDead",
    "SandboxError",
    "SandboxLimits",
    "SandboxStartError",
    "SandboxVariableError",
]
