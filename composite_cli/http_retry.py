"""The HTTP layer's retries, made by composite so that every request is traced (`calls.py`'s
`litellm_acompletion` calls LiteLLM with `max_retries=0` and loops with this policy): how many
retries, which errors, how long to wait, and the record of one attempt. The policy is the openai
SDK's own, so a call is retried as it would have been, only now visibly."""

from __future__ import annotations

import random
import time
from typing import Any

# What the openai SDK retries: these statuses, 5xx, and connection errors and timeouts.
_HTTP_RETRY_STATUS = (408, 409, 429)
_HTTP_BACKOFF_MAX = 8.0
_RETRY_AFTER_MAX = 60.0


def attempt_entry(kwargs: dict[str, Any], started: float, error: str | None, retried: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": str(kwargs.get("model")),
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if error is not None:
        entry["error"] = error
        entry["retried"] = retried
    return entry


def retry_budget(litellm: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """LiteLLM's arguments with its retries turned off, and how many retries to make here."""
    out = dict(kwargs)
    max_retries = out.pop("max_retries", None)
    num_retries = out.pop("num_retries", None)
    if max_retries is None:
        from litellm.constants import DEFAULT_MAX_RETRIES

        max_retries = 0 if _custom_provider(litellm, out) else DEFAULT_MAX_RETRIES
    out["max_retries"] = 0
    return out, max(0, int(max_retries)) + max(0, int(num_retries or 0))


def _custom_provider(litellm: Any, kwargs: dict[str, Any]) -> bool:
    """Whether the model is served by a `custom_provider_map` provider (local, dry, a user's)."""
    custom = {entry.get("provider") for entry in litellm.custom_provider_map or []}
    provider = kwargs.get("custom_llm_provider")
    if not isinstance(provider, str):
        model = str(kwargs.get("model") or "")
        provider = model.split("/", 1)[0] if "/" in model else None
    return provider in custom


def retryable(exc: BaseException) -> bool:
    """What the openai SDK retries: 408, 409, 429, 5xx, connection errors and timeouts."""
    if type(exc).__name__ in ("APIConnectionError", "Timeout", "APITimeoutError"):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in _HTTP_RETRY_STATUS or status >= 500)


def backoff(exc: BaseException, attempt: int) -> float:
    """The openai SDK's wait: the server's Retry-After (up to 60 s), else 0.5 s doubling to 8 s."""
    headers = getattr(exc, "litellm_response_headers", None) or getattr(
        getattr(exc, "response", None), "headers", None
    )
    headers = headers or {}
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(key)
        try:
            value = float(str(raw)) * scale
        except ValueError:
            continue  # absent, or an HTTP date: the SDK's own wait then
        if 0 < value <= _RETRY_AFTER_MAX:
            return value
    return min(0.5 * 2**attempt, _HTTP_BACKOFF_MAX) * (1 - 0.25 * random.random())
