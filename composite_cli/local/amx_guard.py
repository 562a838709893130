"""Refuse a llama.cpp build whose Intel AMX kernels crash on this machine.

A llama-cpp-python built with -march=native on a CPU that advertises AMX runs its matrix products on AMX
kernels, and on some virtual machines those kill the process with SIGSEGV (in ggml_backend_amx_mul_mat)
on the first multi-token prompt. The README's CMAKE_ARGS build without AMX, but pip caches wheels, so an
old native build can linger, and a segfault tells the user nothing. So before the first load: if AMX is
compiled in, a throwaway child process evaluates a short prompt, and a child killed by a signal becomes
a LocalModelError that says how to reinstall. The verdict is cached per installed library (path, mtime
and size of its shared library), so the probe runs once; without AMX nothing runs at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import llama_cpp

from composite_cli.config import APP_NAME
from composite_cli.errors import LocalModelError

Verdict = Literal["ok", "crashes"]

REINSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
    "pip install --force-reinstall --no-cache-dir llama-cpp-python"
)
CRASH_MESSAGE = (
    "the installed llama-cpp-python uses Intel AMX kernels that crash on this machine; "
    f"reinstall with {REINSTALL}"
)

# Run as `python -P -c PROBE_SCRIPT <model path>`: the smallest load and prompt that reach the AMX
# kernels (a one-token prompt does not; the crash comes with the first multi-token batch).
PROBE_SCRIPT = """\
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, verbose=False)
llm("The capital of France is", max_tokens=2)
"""
_PROBE_TIMEOUT = 300.0  # seconds; loading and two tokens take about one
_CACHE_FILE = "llama-build-check.json"


def amx_compiled_in() -> bool:
    """Whether the installed llama.cpp has AMX kernels (its system info reports `AMX_INT8 = 1`)."""
    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


def check_llama_build(model: Path) -> None:
    """Raise LocalModelError if the installed llama.cpp has AMX kernels that crash on this machine.

    Free when AMX is not compiled in; otherwise probes once per installed library (see the module doc).
    An inconclusive probe (the child failed without a signal, or hung) is not cached and raises nothing:
    the real load then reports whatever is wrong.
    """
    if not amx_compiled_in():
        return
    key = library_key()
    verdict = _read_cache().get(key) if key else None
    if verdict is None:
        verdict = probe(model)
        if verdict is not None and key:
            _write_cache(key, verdict)
    if verdict == "crashes":
        raise LocalModelError(CRASH_MESSAGE)


def probe(model: Path) -> Verdict | None:
    """Load `model` and evaluate a short prompt in a child process.

    "crashes" if the child was killed by a signal, "ok" if it succeeded, None if it failed otherwise.
    """
    # -P: do not put the working directory on the child's sys.path (no implicit code from there).
    command = [sys.executable, "-P", "-c", PROBE_SCRIPT, str(model)]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=_PROBE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode < 0:
        return "crashes"
    return "ok" if done.returncode == 0 else None


def library_key() -> str | None:
    """Identifies the installed llama.cpp build: its shared library's path, mtime and size."""
    lib = getattr(llama_cpp.llama_cpp, "_lib", None)
    path = Path(getattr(lib, "_name", None) or llama_cpp.__file__)
    try:
        stat = path.stat()
    except OSError:
        return None  # no stable identity: probe every time rather than trust a stale verdict
    return f"{path}|{stat.st_mtime_ns}|{stat.st_size}"


def cache_path() -> Path:
    """Where verdicts are kept: $XDG_CACHE_HOME/composite/, else ~/.cache/composite/."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_NAME / _CACHE_FILE


def _read_cache() -> dict[str, Verdict]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or corrupt: as if empty
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and v in ("ok", "crashes")}


def _write_cache(key: str, verdict: Verdict) -> None:
    path = cache_path()
    verdicts = _read_cache()
    verdicts[key] = verdict
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(verdicts, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)  # atomic: another process never reads a half-written file
    except OSError:
        # A cache we cannot write only means the probe runs again next time.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
