"""`composite serve` pays LiteLLM's per-call logging once per request, not once per model call.

Under the server a run's model calls are LiteLLM sub-calls of the client's request
(`internal_sub_call`): the request's own `composite/<mode>` event is logged and billed with the
run's summed cost, and the proxy's own hooks (limiters, service logger, spend tracking) are not run
again for every internal call. A callback of the user's keeps seeing every internal call.
In-process, no server: the serve handler is registered as the `composite` provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from composite_cli.config import Profile, Settings
from composite_cli.litellm_loader import add_custom_provider, get_litellm

litellm = get_litellm()
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


class Events(CustomLogger):
    """Records every success event LiteLLM logs: (model, composite_internal, response_cost)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any, Any]] = []

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        self.seen.append(
            (str(kwargs.get("model")), metadata.get("composite_internal"), kwargs.get("response_cost"))
        )


class ProxyHook(Events):
    """Stands for one of the proxy's own hooks (its class lives under litellm.proxy)."""


ProxyHook.__module__ = "litellm.proxy.hooks.test_stand_in"


@pytest.fixture
def serve_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The serve handler as LiteLLM's `composite` provider, over the priced `dry` mock model."""
    from composite_cli import faults
    from composite_cli.litellm_loader import CALLBACK_LISTS
    from composite_cli.serve.handler import ServeCompositeLLM

    faults.register(litellm)
    handler = ServeCompositeLLM(source="serve", chunk_hidden_params=False)
    profile = Profile("p", {"*": {"model": "dry/mock", "answer": "Paris."}})
    handler.use_settings(Settings(profile=profile, db_path=tmp_path / "t.db"))
    before = list(litellm.custom_provider_map or [])
    add_custom_provider(litellm, "composite", handler)
    for name in CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])
    try:
        yield handler
    finally:
        litellm.custom_provider_map = before
        handler.runner.close()


async def _settled(events: Events, count: int) -> None:
    """LiteLLM logs success in a task after the answer: wait for `count` events (a hang fails)."""
    for _ in range(3000):  # 30 s: only ends a hang (a loaded suite delays LiteLLM's logging worker)
        if len(events.seen) >= count:
            await asyncio.sleep(0.05)  # and no more than that
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"expected {count} success events, saw {events.seen}")


def _ask(model: str = "composite/direct") -> Any:
    return litellm.acompletion(model=model, messages=MESSAGES)


async def test_internal_calls_are_sub_calls_under_the_proxys_own_hooks(serve_provider: Any):
    """Before: the proxy's hooks ran for the request AND for each internal call (2 events for
    `direct`, 5 for moa-v1), each building LiteLLM's standard logging payload."""
    hook = ProxyHook()
    litellm.callbacks = [hook]
    response = await _ask()
    await _settled(hook, 1)
    assert [(m, internal) for m, internal, _ in hook.seen] == [("direct", False)]
    # the one event carries the run's cost (every call of the run summed)
    assert hook.seen[0][2] == pytest.approx(response._hidden_params["composite"]["cost_usd"])
    assert response.choices[0].message.content == "Paris."


async def test_moa_is_one_event_with_the_runs_summed_cost(serve_provider: Any):
    hook = ProxyHook()
    litellm.callbacks = [hook]
    response = await _ask("composite/moa-v1")
    await _settled(hook, 1)
    assert [m for m, _, _ in hook.seen] == ["moa-v1"]
    assert response._hidden_params["composite"]["calls"] == 4


async def test_a_users_callback_still_sees_every_internal_call(serve_provider: Any):
    mine = Events()
    litellm.callbacks = [ProxyHook(), mine]
    await _ask()
    await _settled(mine, 2)
    assert sorted((m, internal) for m, internal, _ in mine.seen) == [
        ("direct", False),
        ("mock", True),
    ]


@pytest.mark.parametrize("registered", [["langfuse"], [lambda *a, **k: None]])
def test_a_callback_by_name_or_function_counts_as_the_users(registered: list[Any]):
    from composite_cli.serve.handler import users_callbacks

    class Registry:
        callbacks: list[Any] = [ProxyHook()]
        success_callback: list[Any] = []

    assert not users_callbacks(Registry)
    Registry.success_callback = registered
    assert users_callbacks(Registry)


async def test_the_sub_call_names_the_request_as_its_parent(serve_provider: Any):
    from litellm._internal_context import internal_parent_request_id, is_internal_call

    from composite_cli import calls

    seen: list[tuple[bool, str | None]] = []

    async def dispatch(**kwargs: Any) -> Any:
        seen.append((is_internal_call.get(), internal_parent_request_id.get()))
        return await litellm.acompletion(**kwargs)

    calls.use_dispatch(dispatch)
    try:
        response = await _ask()
    finally:
        calls.use_dispatch(None)
    assert seen == [(True, response._hidden_params["litellm_call_id"])]
    assert is_internal_call.get() is False  # the request's own context is left as it was


async def test_a_router_groups_rpm_still_holds_for_sub_calls(tmp_path: Path):
    """Internal calls through the proxy's router (serve/router_dispatch) are sub-calls too: the
    router still counts them against its deployment's rpm."""
    from composite_cli import calls, faults
    from composite_cli.serve.handler import ServeCompositeLLM
    from composite_cli.serve.router_dispatch import RouterDispatch

    faults.register(litellm)
    router = litellm.Router(
        model_list=[
            {"model_name": "limited", "litellm_params": {"model": "dry/mock", "answer": "routed", "rpm": 2}}
        ],
        num_retries=0,
        routing_strategy="usage-based-routing-v2",
    )
    handler = ServeCompositeLLM(source="serve", chunk_hidden_params=False)
    profile = Profile("p", {"*": {"model": "limited", "max_retries": 0}})
    handler.use_settings(Settings(profile=profile, db_path=tmp_path / "t.db"))
    before = list(litellm.custom_provider_map or [])
    add_custom_provider(litellm, "composite", handler)
    calls.use_dispatch(RouterDispatch(lambda: router))
    answered, refused = [], []
    try:
        for _ in range(5):
            try:
                answered.append((await _ask()).choices[0].message.content)
            except Exception as exc:  # the test looks at what refused it
                refused.append(type(exc).__name__)
    finally:
        calls.use_dispatch(None)
        litellm.custom_provider_map = before
        handler.runner.close()
    assert answered and set(answered) == {"routed"} and len(answered) <= 2, (answered, refused)
    assert refused and len(answered) + len(refused) == 5


async def test_a_failing_deployment_cools_down_for_sub_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Internal calls are sub-calls under the server (LiteLLM skips their per-call logging), and the
    router still counts their failures: a deployment that fails is put in cooldown and the rest of
    the requests go to the healthy one (without cooldowns, about half of them would fail)."""
    from composite_cli import calls, faults
    from composite_cli.litellm_loader import CALLBACK_LISTS
    from composite_cli.serve.handler import ServeCompositeLLM
    from composite_cli.serve.router_dispatch import RouterDispatch

    faults.register(litellm)
    for name in CALLBACK_LISTS:
        monkeypatch.setattr(litellm, name, [])  # no user callback: every internal call is a sub-call
    router = litellm.Router(
        model_list=[
            {"model_name": "pool", "litellm_params": {"model": "faulty/a", "fault_rate": 1.0, "fault": "server_error"}},
            {"model_name": "pool", "litellm_params": {"model": "dry/mock", "answer": "healthy"}},
        ],
        num_retries=0,
        allowed_fails=0,
        cooldown_time=600,
    )  # fmt: skip
    handler = ServeCompositeLLM(source="serve", chunk_hidden_params=False)
    handler.use_settings(
        Settings(profile=Profile("p", {"*": {"model": "pool", "max_retries": 0}}), db_path=tmp_path / "t.db")
    )
    before = list(litellm.custom_provider_map or [])
    add_custom_provider(litellm, "composite", handler)
    calls.use_dispatch(RouterDispatch(lambda: router))
    answered, failed = [], []
    try:
        for _ in range(12):
            try:
                answered.append((await _ask()).choices[0].message.content)
            except Exception as exc:  # the test looks at what failed
                failed.append(type(exc).__name__)
    finally:
        calls.use_dispatch(None)
        litellm.custom_provider_map = before
        handler.runner.close()
    assert set(answered) == {"healthy"} and len(failed) <= 1, (answered, failed)
