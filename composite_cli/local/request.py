"""One call's inputs, taken from what LiteLLM hands a custom provider."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import litellm

from composite_cli.local.model_info import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    MODEL_NAME,
    PROVIDER,
    TEXT_SAMPLING,
)


@dataclass
class Request:
    """One call's inputs, taken from LiteLLM's `messages` and `optional_params`."""

    messages: list[dict[str, Any]]
    sampling: dict[str, Any]  # keyword arguments for every llama completion call
    stop: Any = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    deadline: float | None = None

    @classmethod
    def build(cls, messages: list[Any], optional_params: dict[str, Any] | None, timeout: Any) -> Request:
        p = optional_params or {}
        sampling: dict[str, Any] = {
            "max_tokens": _max_tokens(p),
            "temperature": DEFAULT_TEMPERATURE if p.get("temperature") is None else _number(p, "temperature"),
        }
        # OpenAI names plus the llama extras LiteLLM passes through untouched; anything else is ignored.
        for key in ("top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repeat_penalty"):
            if p.get(key) is not None:
                sampling[key] = _number(p, key)
        seed = p.get("seed")
        return cls(
            messages=[dict(m) for m in messages],
            sampling=sampling,
            stop=p.get("stop") or None,
            seed=seed if isinstance(seed, int) else None,
            response_format=_response_format(p.get("response_format")),
            tools=list(p.get("tools") or []),
            tool_choice=p.get("tool_choice"),
            deadline=_deadline(timeout),
        )

    def text_sampling(self) -> dict[str, Any]:
        """Sampling for a free-text answer: the text defaults (a repeat penalty), then the caller's
        values; JSON output (`response_format`) keeps the caller's alone, like tool calls."""
        if self.response_format is not None:
            return dict(self.sampling)
        return {**TEXT_SAMPLING, **self.sampling}


def _max_tokens(p: dict[str, Any]) -> int:
    """The caller's token limit (`max_tokens`, else `max_completion_tokens`), a whole number of at
    least 1 as OpenAI requires; llama would read 0 or less as "no limit"."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = p.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise litellm.BadRequestError(
                message=f"{key} must be a whole number of at least 1, got {value!r}",
                model=MODEL_NAME,
                llm_provider=PROVIDER,
            )
        return value
    return DEFAULT_MAX_TOKENS


def _number(p: dict[str, Any], key: str) -> float:
    """A sampling parameter: a finite number (llama samples on NaN or infinity without a word), and
    `temperature` and `top_p` at least 0."""
    value = p[key]
    at_least_0 = key in ("temperature", "top_p")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (at_least_0 and value < 0)
    ):
        wanted = "a finite number of at least 0" if at_least_0 else "a finite number"
        raise litellm.BadRequestError(
            message=f"{key} must be {wanted}, got {value!r}", model=MODEL_NAME, llm_provider=PROVIDER
        )
    return value


def _deadline(timeout: Any) -> float | None:
    # LiteLLM passes its request timeout (600 s unless the caller set one); httpx.Timeout objects are ignored.
    if isinstance(timeout, (int, float)) and timeout > 0:
        return time.monotonic() + timeout
    return None


def _response_format(value: Any) -> dict[str, Any] | None:
    """OpenAI response_format → llama's ({"type": "json_object", "schema": ...} is grammar-constrained)."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "json_object":
        return value
    if value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return None
