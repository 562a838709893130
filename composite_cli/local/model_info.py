"""What the embedded model is called, how large its context is, and its sampling defaults."""

from __future__ import annotations

from typing import Any

MODEL_NAME = "local/smollm2"
PROVIDER = "local"
N_CTX = 2048
DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.7
# Defaults for free-text answers, under the caller's own values. Without a penalty SmolLM2-135M falls
# into loops ("classical classical ..."); llama's repeat_penalty divides the logits of tokens seen in
# the last 64 tokens. Tool calls and JSON get none of this: a penalty there punishes the quotes,
# colons and braces the format needs.
TEXT_SAMPLING: dict[str, float] = {"repeat_penalty": 1.1}

LOCAL_MODEL_INFO: dict[str, dict[str, Any]] = {
    MODEL_NAME: {
        "max_tokens": N_CTX,
        "max_input_tokens": N_CTX,
        "max_output_tokens": N_CTX,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        # Without these register_model warns that cache pricing is unknown.
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "litellm_provider": PROVIDER,
        "mode": "chat",
        "supports_function_calling": True,
        "supports_tool_choice": True,
        "supports_system_messages": True,
    }
}
"""Model-map entry for `litellm.register_model(LOCAL_MODEL_INFO)`: free, 2048-token context."""
