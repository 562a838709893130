"""A proxy cache hit on a mode is a run too.

With LiteLLM's response cache on (`litellm_settings: {cache: true, ...}`), the proxy answers a
repeated request from its cache without calling the `composite` provider, so no run would exist
for it and no `x-composite-run-id` would go out. `CacheHitRuns` is a proxy hook that sees each
answer before the client does (`async_post_call_success_hook`, in the request's own context): for
a cache hit on a mode it records a run (status ok, no model call made, cost 0) with one `llm`
step marked `cached` that names the run whose answer was replayed (`params.cached_from`), hands
its id to the edge (the response header) and puts it in the body (`id` `chatcmpl-<run id>`,
`composite.run_id`, `composite.cached: true`, `composite.cached_from`).

`composite serve` lists this module's `cache_hit_runs` (config.CACHE_HOOK) in the proxy's
`litellm_settings.callbacks` only when the config turns the cache on (a registered callback makes
LiteLLM do its per-call logging work, which composite skips when nobody reads it).
A streamed cache hit is replayed by LiteLLM without this hook: it gets no run of its own (its
chunks carry the replayed run's id).
"""

from __future__ import annotations

import time
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from composite_cli.calls import new_id
from composite_cli.engine.conversation import last_user_text
from composite_cli.events import CallFinished, CallRecord, Event, RunFinished, RunStarted

CACHE_STEP = "proxy cache"


def composite_block(response: Any) -> dict[str, Any] | None:
    """The `composite` block a mode's response carries (None: not a mode's answer)."""
    block = getattr(response, "composite", None)
    if block is None:
        extra = getattr(response, "model_extra", None) or {}
        block = extra.get("composite") if isinstance(extra, dict) else None
    return block if isinstance(block, dict) and isinstance(block.get("run_id"), str) else None


def is_cache_hit(response: Any) -> bool:
    hidden = getattr(response, "_hidden_params", None)
    return isinstance(hidden, dict) and hidden.get("cache_hit") is True


def _first_choice(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    return choices[0] if isinstance(choices, list) and choices else None


def _message(choice: Any) -> dict[str, Any]:
    message = getattr(choice, "message", None)
    dump = getattr(message, "model_dump", None)
    return dump() if callable(dump) else {}


def _tokens(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def cache_hit_events(block: dict[str, Any], data: dict[str, Any], response: Any, run_id: str) -> list[Event]:
    """The events of the run a cache hit is: started, one cached call, finished ok."""
    now = time.time()
    replayed = str(block["run_id"])
    mode = str(block.get("mode") or data.get("model") or "")
    raw = data.get("messages")
    messages: list[dict[str, Any]] = [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []
    choice = _first_choice(response)
    message = _message(choice)
    prompt, completion = _tokens(response)
    finish = getattr(choice, "finish_reason", None)
    text = message.get("content") if isinstance(message.get("content"), str) else None
    record = CallRecord(
        id=new_id(),
        run_id=run_id,
        parent_id=None,
        name=CACHE_STEP,
        alias="",
        model=str(data.get("model") or mode),
        started_at=now,
        request={"params": {"cached_from": replayed}},
        status="ok",
        latency_ms=0.0,
        response={"cached_from": replayed, "finish_reason": finish},
        message=message,
        finish_reason=finish,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=0.0,
        cached=True,
    )
    return [
        RunStarted(
            run_id=run_id,
            mode=mode,
            source="serve",
            profile=str(block.get("profile") or ""),
            input=last_user_text(messages),
            started_at=now,
            params={"cached_from": replayed},
        ),
        CallFinished(record=record),
        RunFinished(
            run_id=run_id,
            status="ok",
            latency_ms=0.0,
            calls=0,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=0.0,
            output=text,
            finish_reason=finish,
        ),
    ]


class CacheHitRuns(CustomLogger):
    """The proxy hook (see the module docstring)."""

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        if not is_cache_hit(response):
            return None
        block = composite_block(response)
        if block is None:
            return None  # a user's own model answered from the cache: not ours
        from composite_cli.provider import response_id
        from composite_cli.serve.handler import current_slot, handler

        run_id = new_id()
        slot = current_slot.get()
        subscribers = handler.runner.open_subscribers([slot] if slot is not None else [])
        for event in cache_hit_events(block, data, response, run_id):
            for subscriber in subscribers:
                subscriber(event)
        info = {
            **block,
            "run_id": run_id,
            "calls": 0,
            "cost_usd": 0.0,
            "latency_ms": 0.0,
            "cached": True,
            "cached_from": block["run_id"],
        }
        info.pop("run_ids", None)
        response.composite = info
        response.id = response_id(run_id)
        # the headers a mode's answer carries (the proxy prefixes them; the edge sends them plain)
        hidden = response._hidden_params
        headers = dict(hidden.get("additional_headers") or {})
        headers.update({"x-composite-run-id": run_id, "x-composite-status": "ok"})
        hidden["additional_headers"] = headers
        return response


cache_hit_runs = CacheHitRuns()
