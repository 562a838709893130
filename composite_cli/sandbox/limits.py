"""Resource limits of one sandboxed REPL (per execution and per process)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed REPL.

    Time: `timeout_s` is the wall-clock time the code itself may run in one execution; time spent
    waiting for an `llm_query`/`rlm_query` answer (the parent's callback) does not count, so a
    block of ten slow sub-calls is not cut short. `total_timeout_s` bounds the whole execution
    including those waits. `cpu_s` is the CPU time of one execution (waiting for an answer uses
    none). `process_cpu_s` is a kernel backstop (RLIMIT_CPU) over the process's whole life.

    When a time limit is hit the code is first interrupted (KeyboardInterrupt, variables kept); if
    it does not stop within `interrupt_grace_s` the process group is killed. After a kill the next
    `execute()` starts a fresh REPL with the initial variables (`restart_after_kill`), at most
    `max_restarts` times; after that `execute()` raises `SandboxDead`.
    """

    timeout_s: float = 30.0
    total_timeout_s: float = 600.0
    cpu_s: float = 30.0
    process_cpu_s: int = 1800
    memory_mb: int = 1024
    max_output_chars: int = 10_000
    max_error_chars: int = 4_000
    max_variable_chars: int = 1_000_000
    max_file_mb: int = 64
    # Total size and number of files in the REPL's temporary directory (a private tmpfs where
    # mount namespaces are available; its pages are memory that RLIMIT_AS does not count).
    max_disk_mb: int = 256
    max_files: int = 4096
    max_open_files: int = 64
    # RLIMIT_NPROC counts every process of the user, so any value below that count (0 by default)
    # means the REPL can start no process and no thread at all.
    max_processes: int = 0
    # pids.max of the REPL's cgroup (where one is usable): processes and threads together.
    max_pids: int = 64
    max_message_mb: int = 64
    interrupt_grace_s: float = 2.0
    start_timeout_s: float = 30.0
    restart_after_kill: bool = True
    max_restarts: int = 3
    # Refuse to start unless the kernel layers (network namespace or Landlock network rules,
    # Landlock file rules, seccomp) are all in place; otherwise run with what is available.
    require_kernel_isolation: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if f.name in ("max_processes", "max_restarts"):
                if value < 0:
                    raise ValueError(f"SandboxLimits.{f.name} must be >= 0, got {value!r}")
            elif value <= 0:
                raise ValueError(f"SandboxLimits.{f.name} must be > 0, got {value!r}")
