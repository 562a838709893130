"""Mock providers: `faulty/...` answers like a mock but fails at a set rate; `dry/...` is the same
mock without faults and priced at 0 (the built-in `dry` profile uses it).

Point an alias at it in a profile to see how a mode behaves when providers misbehave:

    profiles:
      chaos:
        fast:   {model: faulty/gpt-4o-mini, fault_rate: 0.2, fault: rate_limit, answer: "Paris"}
        "*":    {model: openai/gpt-4o-mini, mock_response: "Paris"}

`fault` is one of rate_limit, server_error, timeout, bad_request; `fault_rate` is the chance of a
fault per call (0–1); `fault_seed` makes the sequence repeatable; `answer` is the text of a
successful call and `delay` its latency in seconds. (LiteLLM's own `mock_response` would answer
before this provider is reached, hence the different names.) Both providers stream (the answer in
word-sized pieces) and count tokens as characters / 4, so a run on them is deterministic.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
from litellm.types.llms.openai import ChatCompletionUsageBlock
from litellm.types.utils import GenericStreamingChunk

from composite_cli.config import DRY_MODEL

FAULTS = ("rate_limit", "server_error", "timeout", "bad_request")
DRY_MODEL_INFO: dict[str, dict[str, Any]] = {
    DRY_MODEL: {
        "max_tokens": 128_000,
        "max_input_tokens": 128_000,
        "max_output_tokens": 16_384,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "litellm_provider": "dry",
        "mode": "chat",
        "supports_function_calling": True,
        "supports_tool_choice": True,
        "supports_system_messages": True,
    }
}
"""Model-map entry for `litellm.register_model`: the dry model costs 0 (known), not unknown."""


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


class FaultyLLM(litellm.CustomLLM):
    """Mock answers with injected failures; one random stream per seed, shared across calls."""

    def __init__(self, provider: str = "faulty") -> None:
        super().__init__()
        self.provider = provider
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
        provider = self.provider
        if kind == "server_error":
            return litellm.InternalServerError(message=message, llm_provider=provider, model=model)
        if kind == "timeout":
            return litellm.Timeout(message=message, model=model, llm_provider=provider)
        if kind == "bad_request":
            return litellm.BadRequestError(message=message, model=model, llm_provider=provider)
        return litellm.RateLimitError(message=message, llm_provider=provider, model=model)

    def _reply(self, kwargs: dict[str, Any]) -> tuple[str, int]:
        """The answer text and the prompt's token count, or the injected fault (raised)."""
        options = kwargs.get("optional_params") or {}
        if self._should_fail(options):
            raise self._fault(options, f"{self.provider}/{kwargs['model']}")
        prompt = sum(len(str(m.get("content") or "")) for m in kwargs.get("messages") or []) // 4 + 1
        return str(options.get("answer", "ok")), prompt

    def _answer(self, kwargs: dict[str, Any]) -> Any:
        text, prompt = self._reply(kwargs)
        response = kwargs["model_response"]
        response.choices[0].message.content = text
        response.choices[0].finish_reason = "stop"
        response.usage = litellm.Usage(
            prompt_tokens=prompt, completion_tokens=_tokens(text), total_tokens=prompt + _tokens(text)
        )
        response.model = f"{self.provider}/{kwargs['model']}"
        return response

    def _chunks(self, kwargs: dict[str, Any]) -> Iterator[GenericStreamingChunk]:
        text, prompt = self._reply(kwargs)
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word + (" " if i < len(words) - 1 else "")
            yield GenericStreamingChunk(
                text=piece, tool_use=None, is_finished=False, finish_reason="", usage=None, index=0
            )
        completion = _tokens(text)
        usage = ChatCompletionUsageBlock(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        yield GenericStreamingChunk(
            text="", tool_use=None, is_finished=True, finish_reason="stop", usage=usage, index=0
        )

    @staticmethod
    def _delay(kwargs: dict[str, Any]) -> float:
        return float((kwargs.get("optional_params") or {}).get("delay", 0) or 0)

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        if delay := self._delay(kwargs):
            time.sleep(delay)
        return self._answer(kwargs)

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        if delay := self._delay(kwargs):
            await asyncio.sleep(delay)
        return self._answer(kwargs)

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        if delay := self._delay(kwargs):
            time.sleep(delay)
        return self._chunks(kwargs)

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        if delay := self._delay(kwargs):
            await asyncio.sleep(delay)
        for chunk in self._chunks(kwargs):
            yield chunk


def register(litellm_module: Any) -> None:
    """Add the `faulty` and `dry` providers to LiteLLM and price the dry model at 0."""
    from composite_cli.litellm_loader import add_custom_provider

    add_custom_provider(litellm_module, "faulty", FaultyLLM())
    add_custom_provider(litellm_module, "dry", FaultyLLM(provider="dry"))
    litellm_module.register_model(DRY_MODEL_INFO)


# For a LiteLLM proxy config (the proxy replaces the provider map with its config's):
# custom_handler: composite_cli.faults.handler (faulty) / composite_cli.faults.dry_handler (dry)
handler = FaultyLLM()
dry_handler = FaultyLLM(provider="dry")
