"""What one internal call costs composite: work nobody reads is skipped, work is done once.

These tests count work (calls of a function), never time. They go through the real
`calls.litellm_acompletion` and LiteLLM's mock path (`mock_response`), not the suite's fake model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from composite_cli import calls, redact
from composite_cli.calls import CallRequest, complete
from composite_cli.config import Profile
from composite_cli.engine.runtime import RunContext, RunRequest
from composite_cli.events import CallFinished, Event
from composite_cli.litellm_loader import CALLBACK_LISTS, get_litellm

USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def litellm() -> Any:
    return get_litellm()


def _host(events: list[Event] | None = None, model: str = "openai/gpt-4o-mini") -> RunContext:
    profile = Profile("t", {"*": {"model": model, "mock_response": "Paris."}})
    return RunContext(
        run_id="r",
        mode="m",
        profile=profile,
        request=RunRequest(messages=USER),
        params={},
        max_calls=100,
        deadline_s=60,
        subscribers=[events.append] if events is not None else [],
    )


def _request() -> CallRequest:
    return CallRequest(alias="fast", messages=list(USER), name="ask", parent_id=None)


class _HandlerCount:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from litellm.litellm_core_utils.litellm_logging import Logging

        self.count = 0
        for name in ("async_success_handler", "success_handler"):
            original = getattr(Logging, name)
            monkeypatch.setattr(Logging, name, self._counting(original))

    def _counting(self, original: Any) -> Any:
        if asyncio.iscoroutinefunction(original):

            async def counted_async(*args: Any, **kwargs: Any) -> Any:
                self.count += 1
                return await original(*args, **kwargs)

            return counted_async

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        return counted


async def test_no_callback_registered_skips_litellms_success_logging(litellm, monkeypatch):
    """With no LiteLLM callback and no budget, LiteLLM's per-call success logging (its standard
    payload, a second pricing pass, a task and a thread-pool job) has no reader: it is skipped.
    The call is still priced (LiteLLM's response cost) and answered."""
    for name in CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    handlers = _HandlerCount(monkeypatch)
    record = await complete(_host(), _request())
    await asyncio.sleep(0.05)  # let any logging task LiteLLM spawned run
    assert record.status == "ok" and record.text == "Paris."
    assert record.cost_usd is not None and record.cost_usd > 0
    assert handlers.count == 0


async def test_a_registered_callback_still_sees_every_internal_call(litellm, monkeypatch):
    from litellm.integrations.custom_logger import CustomLogger

    seen: list[dict[str, Any]] = []

    class Spy(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(kwargs)

    spy = Spy()
    # registered where LiteLLM's success handler reads it too (an earlier test file in the same
    # process may leave LiteLLM's derived registries as they were, so `callbacks` alone can go unread)
    for name in CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    monkeypatch.setattr(litellm, "callbacks", [spy])
    monkeypatch.setattr(litellm, "_async_success_callback", [spy])
    await complete(_host(), _request())
    # the callback runs in a task LiteLLM's logging worker runs (after a thread-pool hop): under a
    # loaded suite that took over 2 s once; this bound (30 s) only ends a hang
    for _ in range(3000):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert seen, "LiteLLM never called the registered callback"
    metadata = seen[0]["litellm_params"]["metadata"]
    assert metadata["composite_internal"] is True and metadata["composite_call"] == "ask"


async def test_a_budget_keeps_litellms_logging(litellm, monkeypatch):
    """litellm.max_budget counts spend in the success handler, so the handler must run."""
    for name in CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    monkeypatch.setattr(litellm, "max_budget", 1000.0)
    assert not calls._unlogged(litellm, {"model": "openai/x"})
    monkeypatch.setattr(litellm, "max_budget", 0.0)
    assert calls._unlogged(litellm, {"model": "openai/x"})
    assert not calls._unlogged(litellm, {"model": "openai/x", "success_callback": ["langfuse"]})


async def test_litellm_cache_hit_is_marked_cached_in_the_record(litellm, monkeypatch):
    """An internal call LiteLLM's own cache answered is marked cached, as composite's cache hits are."""
    cache = litellm.Cache(type="local")
    monkeypatch.setattr(litellm, "cache", cache)
    events: list[Event] = []
    host = _host(events)
    first = await complete(host, _request())
    for _ in range(500):  # LiteLLM stores the answer in a task of its own: wait for that (bounded)
        if cache.cache.cache_dict:
            break
        await asyncio.sleep(0.01)
    second = await complete(host, _request())
    assert first.cached is False
    assert second.cached is True and second.text == "Paris."
    assert host.cached_calls == 1
    finished = [e.record for e in events if isinstance(e, CallFinished)]
    assert [r.cached for r in finished] == [False, True]


async def test_parameters_are_masked_once_per_call(monkeypatch):
    """The call's parameters are masked for the trace once, not once per record built."""
    masked: list[dict[str, Any]] = []
    original = calls._logged

    def counting(kwargs: dict[str, Any]) -> dict[str, Any]:
        masked.append(kwargs)
        return original(kwargs)

    monkeypatch.setattr(calls, "_logged", counting)
    record = await complete(_host(), _request())
    assert record.status == "ok"
    assert len(masked) == 1


def test_environment_secrets_are_read_once_while_the_environment_is_unchanged(monkeypatch):
    reads: list[int] = []
    original = redact._secret_named_values

    def counting(environ: Any) -> list[str]:
        reads.append(1)
        return original(environ)

    monkeypatch.setattr(redact, "_secret_named_values", counting)
    monkeypatch.setattr(redact, "_env_cache", None)
    for _ in range(3):
        redact.sanitize_params({"model": "openai/x"})
    assert len(reads) == 1
    # a variable set later is seen at once, and masked
    monkeypatch.setenv("LATE_API_KEY", "late-secret-value-123")
    assert redact.redact_text("the key late-secret-value-123 leaked") == f"the key {redact.MASK} leaked"
    assert len(reads) == 2
    monkeypatch.delenv("LATE_API_KEY")
    assert (
        "late-secret-value-123" not in redact.known_secrets() or "late-secret-value-123" in redact._remembered
    )


def test_trace_writes_arriving_together_share_one_transaction(tmp_path):
    """The writer thread lets writes gather before it commits them, rather than waking (and taking
    the GIL back from the event loop) for every row: 100 writes a millisecond apart make a few
    transactions, not 100. A flush commits at once."""
    import time

    from composite_cli.traces.store import TraceStore

    store = TraceStore(tmp_path / "t.db").open()
    for i in range(100):
        store.cache_response(f"k{i}", "m", "{}", "2026-01-01T00:00:00Z")
        time.sleep(0.001)  # writes spread out as a run makes them (not a measurement)
    store.flush()
    assert store.batches <= 10
    with store.reader() as db:
        assert db.execute("select count(*) from call_cache").fetchone()[0] == 100
    store.close()


def test_a_call_cache_miss_makes_no_query(tmp_path):
    """The cache's keys are in memory: a request never stored is a miss without a SELECT on the
    event loop's thread; a stored one is found, whether stored before or after the first lookup,
    by this process or (before it started looking) by another."""
    from composite_cli.traces.cache import CallCache
    from composite_cli.traces.store import TraceStore

    earlier = TraceStore(tmp_path / "t.db")
    CallCache(earlier).put("from-before", "m", {"message": {"content": "old"}})
    earlier.close()

    store = TraceStore(tmp_path / "t.db")
    cache = CallCache(store)
    cache.put("early", "m", {"message": {"content": "early"}})  # before any lookup
    assert cache.get("absent-0") is None
    statements: list[str] = []
    assert cache._conn is not None
    cache._conn.set_trace_callback(statements.append)
    for i in range(1, 50):
        assert cache.get(f"absent-{i}") is None
    assert statements == []
    store.flush()
    cache.put("late", "m", {"message": {"content": "late"}})
    store.flush()
    assert cache.get("from-before") == {"message": {"content": "old"}}
    assert cache.get("early") == {"message": {"content": "early"}}
    assert cache.get("late") == {"message": {"content": "late"}}
    assert cache.misses == 50 and cache.hits == 3
    cache.close()
    store.close()
