"""The instance pool: metered `llama_cpp.Llama` instances, each used by one request at a time.

One instance serializes the calls made on it, so the pool holds several (one per core by default) to
let concurrent calls run in parallel. Instances are loaded on first need.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import litellm
import llama_cpp

from composite_cli.errors import LocalModelError
from composite_cli.local.amx_guard import check_llama_build
from composite_cli.local.meter import Cancelled, Meter
from composite_cli.local.model_file import model_path
from composite_cli.local.model_info import MODEL_NAME, N_CTX, PROVIDER


class MeteredLlama(llama_cpp.Llama):
    """A Llama whose token loop reports to the meter of the request currently using it."""

    meter: Meter | None = None

    def generate(  # same call shape as Llama.generate, only observed
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        meter = self.meter
        if meter is not None:
            meter.begin(len(tokens))
        tokens_out = super().generate(tokens, *args, **kwargs)
        try:
            for token in tokens_out:
                # The same end-of-generation test llama's completion loop applies to each token.
                is_end = llama_cpp.llama_vocab_is_eog(self._model.vocab, token)
                if meter is not None and meter.on_token(token, is_end):
                    # A loop, or max_tokens reached: end here, as if out of tokens (llama then reports
                    # finish_reason "length").
                    return
                yield token
        finally:
            tokens_out.close()


class Pool:
    """Up to `size` Llama instances, created on first need, each used by one request at a time."""

    def __init__(self, size: int, n_threads: int):
        self.size = size
        self.n_threads = n_threads
        # The threads all generation runs on (see `handler.start`), one per instance.
        self.workers = ThreadPoolExecutor(max_workers=size, thread_name_prefix="composite-local-model")
        self._cond = threading.Condition()
        self._idle: list[MeteredLlama] = []
        self._created = 0
        # Llama() initialises the llama.cpp backend on first use; keep two loads from racing there.
        self._load_lock = threading.Lock()
        self._build_checked = False

    @contextlib.contextmanager
    def lease(self, cancel: threading.Event, deadline: float | None) -> Iterator[MeteredLlama]:
        """Borrow an idle instance (or load a new one, or wait), and give it back afterwards."""
        llm = self._acquire(cancel, deadline)
        try:
            yield llm
        finally:
            llm.meter = None
            with self._cond:
                self._idle.append(llm)
                self._cond.notify()

    def _acquire(self, cancel: threading.Event, deadline: float | None) -> MeteredLlama:
        with self._cond:
            while True:
                if cancel.is_set():
                    raise Cancelled()
                if deadline is not None and time.monotonic() > deadline:
                    raise litellm.Timeout(
                        message="timed out waiting for a free local model instance",
                        model=MODEL_NAME,
                        llm_provider=PROVIDER,
                    )
                if self._idle:
                    return self._idle.pop()
                if self._created < self.size:
                    self._created += 1  # reserve the slot, load outside the lock
                    break
                # Short waits so a cancelled or timed-out request stops waiting promptly.
                self._cond.wait(timeout=0.1)
        try:
            with self._load_lock:
                return self._load()
        except BaseException:
            with self._cond:
                self._created -= 1
                self._cond.notify()
            raise

    def _load(self) -> MeteredLlama:
        path = model_path()
        if not self._build_checked:
            # Before the first load: a llama.cpp build that would segfault becomes a clear error instead.
            check_llama_build(path)
            self._build_checked = True
        try:
            return MeteredLlama(
                model_path=str(path),
                # llama-cpp-python derives each unseeded call's seed from the previous one, starting
                # here; a fixed start would make every new process sample the same answers.
                seed=secrets.randbelow(2**32 - 1) + 1,
                n_ctx=N_CTX,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                verbose=False,
            )
        except Exception as exc:
            raise LocalModelError(f"could not load the local model from {path}: {exc}") from exc

    def status(self) -> dict[str, int]:
        with self._cond:
            idle = len(self._idle)
            return {
                "size": self.size,
                "threads": self.n_threads,
                "loaded": self._created,
                "idle": idle,
                "in_use": self._created - idle,
            }


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise LocalModelError(f"{name} must be a positive integer, got {raw!r}")
    return value


def _pool_size() -> int:
    # Default: one single-threaded instance per core, so fan-outs run in parallel. (One instance using
    # every core answers a lone call faster, but serializes concurrent ones; total throughput is about
    # the same.)
    return _env_int("COMPOSITE_LOCAL_POOL", os.cpu_count() or 1)


def threads_per_instance() -> int:
    """Threads each pool instance uses: $COMPOSITE_LOCAL_THREADS, else the cores shared among the
    pool's instances ($COMPOSITE_LOCAL_POOL, default one per core), at least 1."""
    cpus = os.cpu_count() or 1
    return _env_int("COMPOSITE_LOCAL_THREADS", max(1, cpus // _pool_size()))


_pool: Pool | None = None
_pool_lock = threading.Lock()


def get_pool() -> Pool:
    """The process-wide pool, created on first use from the environment."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Pool(_pool_size(), threads_per_instance())
        return _pool


def pool_status() -> dict[str, int]:
    """Pool size, threads per instance, and how many instances are loaded, idle and in use."""
    return get_pool().status()
