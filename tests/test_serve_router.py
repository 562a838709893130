"""`composite serve` and the user's LiteLLM router: the merged config never shadows a user's model
entry, and internal calls go through the proxy's router when their model is one of its groups
(serve/router_dispatch.py). In-process, no server: the router is a real `litellm.Router`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from composite_cli.engine.library import ModeLibrary
from composite_cli.serve import config
from composite_cli.serve.errors import ServeError

T = TypeVar("T")

# LiteLLM's usage-based-routing-v2 makes its Redis sync coroutine when a Router is built outside
# a running loop (as these tests build theirs) and never awaits it; with no Redis there is nothing to sync.
pytestmark = pytest.mark.filterwarnings(
    "ignore:coroutine 'BaseRoutingStrategy.periodic_sync_in_memory_spend_with_redis' was never awaited"
)


def _merged(
    model_list: list[dict[str, Any]], modes: tuple[str, ...] = ("direct", "moa"), **more: Any
) -> dict[str, Any]:
    served = config.served_modes(ModeLibrary(), list(modes))
    return config.proxy_config(served, {"model_list": model_list, **more})


def _names(merged: dict[str, Any]) -> list[str]:
    return [e["model_name"] for e in merged["model_list"]]


# -- never shadow a user's entry --------------------------------------------------------------


def test_a_users_limited_mode_entry_gets_no_unlimited_twin():
    """issue 16: with `direct` (composite/direct, rpm 10) in the user's config, composite added an
    unlimited `composite/direct` beside it, which kept answering after `direct` was limited."""
    theirs = {"model_name": "direct", "litellm_params": {"model": "composite/direct", "rpm": 10}}
    merged = _merged([theirs])
    names = _names(merged)
    assert names.count("direct") == 1 and "composite/direct" not in names
    assert [e for e in merged["model_list"] if e["litellm_params"]["model"] == "composite/direct"] == [theirs]
    # the mode's other name reaches the user's entry, so it shares its deployments and limits
    assert merged["router_settings"]["model_group_alias"] == {"composite/direct": "direct"}
    assert {"composite/moa-v1", "moa-v1", "moa"} <= set(names)  # modes the user did not name: as before


def test_a_users_own_composite_model_entry_is_not_duplicated():
    """A limit on `composite/direct` itself was shadowed by a second, unlimited `composite/direct`."""
    theirs = {"model_name": "composite/direct", "litellm_params": {"model": "composite/direct", "rpm": 3}}
    merged = _merged([theirs])
    names = _names(merged)
    assert names.count("composite/direct") == 1 and "direct" not in names
    assert merged["router_settings"]["model_group_alias"] == {"direct": "composite/direct"}


def test_a_mode_under_a_name_of_the_users_choosing():
    theirs = {"model_name": "cheap", "litellm_params": {"model": "composite/moa", "tpm": 1000}}
    merged = _merged([theirs])
    aliases = merged["router_settings"]["model_group_alias"]
    assert aliases == {"composite/moa-v1": "cheap", "moa-v1": "cheap", "moa": "cheap"}
    assert [n for n in _names(merged) if "moa" in n or n == "cheap"] == ["cheap"]
    served = config.claim_names(config.served_modes(ModeLibrary(), ["moa"]), {"model_list": [theirs]})
    assert served[0].names == ("composite/moa-v1", "moa-v1", "moa", "cheap")  # all of them reach the mode


def test_a_users_other_model_keeps_its_name_and_the_mode_its_others():
    theirs = {"model_name": "moa", "litellm_params": {"model": "openai/their-moa"}}
    merged = _merged([theirs])
    assert _names(merged).count("moa") == 1
    assert "composite/moa-v1" in _names(merged) and "model_group_alias" not in merged["router_settings"]
    served = config.claim_names(config.served_modes(ModeLibrary(), ["moa"]), {"model_list": [theirs]})
    assert served[0].names == ("composite/moa-v1", "moa-v1")  # `moa` is their model, not the mode


def test_a_users_own_alias_wins_and_a_bad_alias_map_is_named():
    theirs = {"model_name": "direct", "litellm_params": {"model": "composite/direct"}}
    merged = _merged([theirs], router_settings={"model_group_alias": {"composite/direct": "elsewhere"}})
    assert merged["router_settings"]["model_group_alias"] == {"composite/direct": "elsewhere"}
    assert "composite/direct" not in _names(merged)
    with pytest.raises(ServeError, match=r"router_settings\.model_group_alias"):
        _merged([theirs], router_settings={"model_group_alias": ["x"]})


def test_hostile_model_list_entries_take_no_name(tmp_path: Path):
    path = tmp_path / "litellm.yaml"
    hostile = {"model_list": ["junk", {"model_name": 3}, {"model_name": "x"}]}
    path.write_text(yaml.safe_dump(hostile))
    # the file is refused at its first bad entry, in one line
    with pytest.raises(ServeError, match=r"litellm.yaml:2: model_list\[0\]: must be a mapping"):
        config.read_litellm_config(path)
    # and the merge itself gives such entries no name of a mode
    merged = config.proxy_config(config.served_modes(ModeLibrary(), ["direct"]), hostile)
    assert {"composite/direct", "direct", "x"} <= set(_names(merged))


# -- internal calls through the proxy's router --------------------------------------------------


def _router(model_list: list[dict[str, Any]], **settings: Any) -> Any:
    from composite_cli.litellm_loader import get_litellm

    litellm = get_litellm()
    from composite_cli import faults

    faults.register(litellm)
    return litellm.Router(model_list=model_list, num_retries=0, **settings)


def _in_one_minute(routed: Any, make_router: Callable[[], Any], burst: Callable[[], T]) -> T:
    """Run `burst` over a fresh router until one run starts and ends in the same calendar minute
    (LiteLLM counts rpm per minute: a burst across the boundary starts counting again). A fresh
    router has fresh counters, so nothing waits; the clock is only read, never measured."""
    for _ in range(3):
        routed.router = make_router()
        minute = time.strftime("%H:%M")
        result = burst()
        if time.strftime("%H:%M") == minute:
            return result
    pytest.fail("three bursts in a row crossed a minute boundary")


def _limited(rpm: int = 2) -> dict[str, Any]:
    return {
        "model_name": "limited",
        "litellm_params": {"model": "dry/mock", "answer": "from the router", "rpm": rpm},
    }


@pytest.fixture
def routed() -> Any:
    """Install a RouterDispatch over a router the test sets (`routed.router = ...`); uninstall after."""
    from composite_cli import calls
    from composite_cli.serve.router_dispatch import RouterDispatch

    class Box:
        router: Any = None

    box = Box()
    dispatch = RouterDispatch(lambda: box.router)
    calls.use_dispatch(dispatch)
    try:
        yield box
    finally:
        calls.use_dispatch(None)


def _run_direct(tmp_path: Path, alias: dict[str, Any], times: int, stream: bool = False) -> list[Any]:
    """Run the mode `direct` `times` times in a row on one event loop (as a server does)."""
    import asyncio

    from composite_cli.config import Profile, Settings
    from composite_cli.engine.runtime import RunRequest
    from composite_cli.runner import Runner

    runner = Runner(Settings(profile=Profile("p", {"*": alias}), db_path=tmp_path / "t.db"))
    request = RunRequest(messages=[{"role": "user", "content": "hi"}], stream=stream)

    async def runs() -> list[Any]:
        out: list[Any] = []
        for _ in range(times):
            try:
                out.append(await runner.run("direct", request))
            except Exception as exc:  # the test looks at what ended the run
                out.append(exc)
        return out

    try:
        return asyncio.run(runs())
    finally:
        runner.close()


def test_an_internal_call_to_a_router_group_obeys_its_rpm(routed: Any, tmp_path: Path):
    """issue 16: `rpm: 2` on a group let 8 internal calls through in a minute (calls skipped the router)."""
    # usage-based-routing-v2 counts a call as it starts; the older strategy counts it in a task
    # after the answer, which a caller that goes on at once can outrun
    results = _in_one_minute(
        routed,
        lambda: _router([_limited(2)], routing_strategy="usage-based-routing-v2"),
        lambda: _run_direct(tmp_path, {"model": "limited", "max_retries": 0}, 6),
    )
    answered = [r.text for r in results if not isinstance(r, Exception)]
    # the deployment's parameters answered: the calls went through the router; at most `rpm` of them
    # (in memory, without Redis, LiteLLM's v2 counter lets one fewer through)
    assert answered[0] == "from the router" and 1 <= len(answered) <= 2, results
    # the rest: LiteLLM's "no deployments available" (the proxy answers it with 429)
    assert [type(r).__name__ for r in results[len(answered) :]] == ["RateLimitError"] * (6 - len(answered))


def test_a_streamed_internal_call_goes_through_the_router(routed: Any, tmp_path: Path):
    results = _in_one_minute(
        routed,
        lambda: _router([_limited(1)], routing_strategy="usage-based-routing-v2"),
        lambda: _run_direct(tmp_path, {"model": "limited", "max_retries": 0}, 2, stream=True),
    )
    assert results[0].text == "from the router"
    # v2 counts a call when it starts, a stream included (the older strategy counts a stream at its end)
    assert type(results[1]).__name__ == "RateLimitError"


def test_models_the_router_does_not_have_go_to_litellm(routed: Any, tmp_path: Path):
    routed.router = _router([_limited(1)], routing_strategy="usage-based-routing")
    results = _run_direct(tmp_path, {"model": "dry/mock", "answer": "plain", "max_retries": 0}, 3)
    assert [r.text for r in results] == ["plain"] * 3  # no limit: not a router group
    routed.router = None  # no proxy router at all (the CLI, an eval): litellm.acompletion
    assert [r.text for r in _run_direct(tmp_path, {"model": "dry/mock", "answer": "plain"}, 1)] == ["plain"]


def test_a_group_alias_reaches_the_router_and_a_failing_deployment_cools_down(routed: Any, tmp_path: Path):
    failing = {
        "model_name": "pool",
        "litellm_params": {"model": "faulty/a", "fault_rate": 1.0, "fault": "server_error"},
    }
    healthy = {"model_name": "pool", "litellm_params": {"model": "dry/mock", "answer": "healthy"}}
    routed.router = _router(
        [failing, healthy], model_group_alias={"fast": "pool"}, allowed_fails=0, cooldown_time=600
    )
    results = _run_direct(tmp_path, {"model": "fast", "max_retries": 0}, 12)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) <= 1  # the failing deployment fails once, then sits out its cooldown
    assert [r.text for r in results if not isinstance(r, Exception)] == ["healthy"] * (12 - len(errors))


def test_the_cache_hit_hook_is_listed_only_when_the_cache_is_on():
    """A proxy cache hit on a mode is recorded as a run by a proxy hook (serve/cache_runs.py); a
    registered callback makes LiteLLM log every call, so it is there only with the cache on."""
    assert "callbacks" not in _merged([])["litellm_settings"]
    on = _merged([], litellm_settings={"cache": True, "callbacks": ["their.handler"]})
    assert on["litellm_settings"]["callbacks"] == ["their.handler", config.CACHE_HOOK]
    again = config.proxy_config(config.served_modes(ModeLibrary(), ["direct"]), on)
    assert again["litellm_settings"]["callbacks"].count(config.CACHE_HOOK) == 1
    with pytest.raises(ServeError, match=r"litellm_settings\.callbacks"):
        _merged([], litellm_settings={"cache": True, "callbacks": {"x": 1}})
    import importlib

    module, _, name = config.CACHE_HOOK.rpartition(".")
    assert type(getattr(importlib.import_module(module), name)).__name__ == "CacheHitRuns"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("router_settings: {model_group_alias: [a, b]}\n", "router_settings.model_group_alias"),
        ("litellm_settings: {cache: true, callbacks: {a: 1}}\n", "litellm_settings.callbacks"),
    ],
)
def test_a_bad_field_the_merge_reads_is_one_line_naming_file_and_field(tmp_path: Path, text: str, field: str):
    path = tmp_path / "litellm.yaml"
    path.write_text(text)
    with pytest.raises(ServeError) as caught:
        config.read_litellm_config(path)
    assert str(caught.value).startswith(f"{path}: {field}: must be")


async def test_the_cache_hook_leaves_answers_it_does_not_own():
    """Only a cache hit on a mode becomes a run (the two-instance test covers that one)."""
    from composite_cli.litellm_loader import get_litellm
    from composite_cli.serve.cache_runs import CacheHitRuns

    litellm = get_litellm()
    fresh = litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": "x"}, "index": 0}])
    fresh.composite = {"run_id": "r1", "mode": "direct"}
    theirs = litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": "x"}, "index": 0}])
    theirs._hidden_params["cache_hit"] = True  # a user's own model answered from the cache
    hook = CacheHitRuns()
    assert await hook.async_post_call_success_hook({"model": "direct"}, None, fresh) is None
    assert await hook.async_post_call_success_hook({"model": "gpt-4o"}, None, theirs) is None
