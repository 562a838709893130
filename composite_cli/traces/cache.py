"""The exact-request call cache, kept in the trace database (table `call_cache`).

A key is the SHA-256 of everything that shapes a model's answer: the model, the messages, tools,
tool choice and sampling parameters, plus a salt that keeps deliberate repeats apart (an eval's
repeat number, a fan-out's sample number). Secrets, metadata, timeouts and retry settings are
left out. Reads use their own connection; writes go through the store's writer thread.

The keys themselves are kept in memory (read once, at the first lookup, when there are at most
MAX_KEYS_IN_MEMORY; then every key this cache stores is added): a request whose key is not there
is a miss without a query. A query on the event loop's thread per model call gave the GIL away
and back at each one, which under load cost far more wall time than the query (an eval's first
run is all misses). A key another process stores after the first lookup is not seen by this one
until it starts again: that request is made anew (and recorded), never answered wrongly.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from typing import Any

from composite_cli.redact import is_secret_key
from composite_cli.traces.store import TraceStore, TraceStoreUnreadable

MAX_KEYS_IN_MEMORY = 100_000  # ~15 MB of keys; a bigger cache is looked up by query each time
_IGNORED = {"metadata", "timeout", "num_retries", "stream", "stream_options", "mock_delay", "user"}


class CallCache:
    """Look up and store model responses by request."""

    def __init__(self, store: TraceStore):
        self.store = store.open()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        # every key in call_cache (None: not read yet; False: too many, look each one up)
        self._keys: set[str] | bool | None = None
        self._stored_early: set[str] = set()  # stored before the keys were read (maybe not committed)

    @staticmethod
    def key(kwargs: dict[str, Any], salt: str = "") -> str:
        shaped = {k: v for k, v in kwargs.items() if k not in _IGNORED and not is_secret_key(k)}
        blob = json.dumps({"request": shaped, "salt": salt}, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for `key`, or None. A driver error is a TraceStoreError."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(str(self.store.path), check_same_thread=False, timeout=10)
                if self._keys is None:
                    self._keys = self._read_keys(self._conn)
                    if isinstance(self._keys, set):
                        self._keys |= self._stored_early
                    self._stored_early = set()
                if isinstance(self._keys, set) and key not in self._keys:
                    row = None
                else:
                    row = self._conn.execute(
                        "select response_json from call_cache where key = ?", [key]
                    ).fetchone()
            except sqlite3.Error as exc:
                raise TraceStoreUnreadable(
                    f"cannot read the call cache in {self.store.path}: {exc}", str(exc)
                ) from exc
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return dict(json.loads(row[0]))

    @staticmethod
    def _read_keys(conn: sqlite3.Connection) -> set[str] | bool:
        rows = conn.execute("select key from call_cache limit ?", [MAX_KEYS_IN_MEMORY + 1]).fetchall()
        return False if len(rows) > MAX_KEYS_IN_MEMORY else {row[0] for row in rows}

    def put(self, key: str, model: str, response: dict[str, Any]) -> None:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.store.cache_response(key, model, json.dumps(response, ensure_ascii=False), created)
        with self._lock:
            if isinstance(self._keys, set):
                self._keys.add(key)
            elif self._keys is None:
                self._stored_early.add(key)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
