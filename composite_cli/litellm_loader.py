"""Import LiteLLM once, lazily, configured for composite (offline cost map, quiet, local model).

`import litellm` takes seconds, so commands that do not call a model never import it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_litellm: ModuleType | None = None


def get_litellm() -> ModuleType:
    """The configured `litellm` module (imported on first use)."""
    global _litellm
    if _litellm is not None:
        return _litellm
    loaded = False
    with _lock:
        if _litellm is None:
            # Without this LiteLLM fetches its price map over the network at import time.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            _register_local_provider(litellm)
            _litellm = litellm
            loaded = True
    if loaded:
        # After the lock: describing the modes asks LiteLLM (through this function) for windows.
        from composite_cli.model_metadata import register_default_modes

        register_default_modes(_litellm)
    return _litellm


# LiteLLM's callback registries (a callback a config or a user registers lands in one or more).
CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "_async_success_callback",
    "failure_callback",
    "_async_failure_callback",
    "input_callback",
    "_async_input_callback",
    "service_callback",
)


def registered_callbacks(litellm: Any) -> list[Any]:
    """Every callback registered with LiteLLM, in all its registries."""
    return [callback for name in CALLBACK_LISTS for callback in getattr(litellm, name, None) or ()]


def sub_call(parent_request_id: str | None = None) -> contextlib.AbstractContextManager[Any]:
    """LiteLLM's own switch for "a nested call the parent call logs and bills" (`internal_sub_call`):
    calls made inside skip LiteLLM's success and failure logging, nothing else. A LiteLLM without
    it: a no-op (every call is logged, as before)."""
    try:
        from litellm._internal_context import internal_sub_call
    except ImportError:  # pragma: no cover - an older or newer LiteLLM without it
        return contextlib.nullcontext()
    return internal_sub_call(parent_request_id)


def add_custom_provider(litellm: Any, provider: str, handler: Any) -> None:
    """Add (or replace) a provider in `litellm.custom_provider_map`."""
    entries = [e for e in (litellm.custom_provider_map or []) if e.get("provider") != provider]
    entries.append({"provider": provider, "custom_handler": handler})
    litellm.custom_provider_map = entries


def _register_local_provider(litellm: Any) -> None:
    from composite_cli.local import LOCAL_MODEL_INFO, LocalLLM

    add_custom_provider(litellm, "local", LocalLLM())
    litellm.register_model(LOCAL_MODEL_INFO)
    from composite_cli.faults import register as register_mock_providers

    register_mock_providers(litellm)  # `faulty/...` and `dry/...` (the built-in dry profile)
