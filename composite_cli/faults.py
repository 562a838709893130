"""Fault injection: a LiteLLM provider `faulty/...` that answers like a mock but fails at a set rate.

Point an alias at it in a profile to see how a mode behaves when providers misbehave:

    profiles:
      chaos:
        fast:   {model: faulty/gpt-4o-mini, fault_rate: 0.2, fault: rate_limit, answer: "Paris"}
        "*":    {model: openai/gpt-4o-mini, mock_response: "Paris"}

`fault` is one of rate_limit, server_error, timeout, bad_request; `fault_rate` is the chance of a
fault per call (0–1); `fault_seed` makes the sequence repeatable; `answer` is the text of a
successful call and `delay` its latency in seconds. (LiteLLM's own `mock_response` would answer
before this provider is reached, hence the different names.)
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import litellm

FAULTS = ("rate_limit", "server_error", "timeout", "bad_request")


class FaultyLLM(litellm.CustomLLM):
    """Mock answers with injected failures; one random stream per seed, shared across calls."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._rngs: dict[Any, random.Random] = {}

    def _should_fail(self, options: dict[str, Any]) -> bool:
        rate = float(options.get("fault_rate", 0.0))
        seed = options.get("fault_seed")
        with self._lock:
            rng = self._rngs.setdefault(seed, random.Random(seed))
            return rng.random() < rate

    def _fault(self, options: dict[str, Any], model: str) -> Exception:
        kind = options.get("fault", "rate_limit")
        message = f"injected {kind} fault"
        if kind == "server_error":
            return litellm.InternalServerError(message=message, llm_provider="faulty", model=model)
        if kind == "timeout":
            return litellm.Timeout(message=message, model=model, llm_provider="faulty")
        if kind == "bad_request":
            return litellm.BadRequestError(message=message, model=model, llm_provider="faulty")
        return litellm.RateLimitError(message=message, llm_provider="faulty", model=model)

    def _answer(self, kwargs: dict[str, Any]) -> Any:
        options = kwargs.get("optional_params") or {}
        model = f"faulty/{kwargs['model']}"
        if self._should_fail(options):
            raise self._fault(options, model)
        response = kwargs["model_response"]
        text = str(options.get("answer", "ok"))
        response.choices[0].message.content = text
        response.choices[0].finish_reason = "stop"
        prompt = sum(len(str(m.get("content") or "")) for m in kwargs.get("messages") or []) // 4 + 1
        response.usage = litellm.Usage(
            prompt_tokens=prompt,
            completion_tokens=len(text) // 4 + 1,
            total_tokens=prompt + len(text) // 4 + 1,
        )
        response.model = model
        return response

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        delay = float((kwargs.get("optional_params") or {}).get("delay", 0) or 0)
        if delay:
            time.sleep(delay)
        return self._answer(kwargs)

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        delay = float((kwargs.get("optional_params") or {}).get("delay", 0) or 0)
        if delay:
            await asyncio.sleep(delay)
        return self._answer(kwargs)


# For a LiteLLM proxy config (the proxy replaces the provider map with its config's):
# custom_handler: composite_cli.faults.handler
handler = FaultyLLM()
