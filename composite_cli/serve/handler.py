"""The provider instances the proxy loads by dotted path (see config.provider_map).

`handler` runs every request as a traced run with `source="serve"` and tells the HTTP edge the
run's id as soon as the run starts, so even a streamed response can carry `x-composite-run-id`
in its headers. The edge puts a `RunSlot` in a context variable for each request; the run fills it.

A run's model calls are LiteLLM sub-calls of the client's request (LiteLLM's `internal_sub_call`,
"a nested call the parent call logs and bills") unless a callback the user configured is
registered: the request's own `composite/<mode>` event is logged and billed once, with the run's
summed cost, and LiteLLM skips the per-call success logging (its standard logging payload, the
proxy's hooks: limiters, spend tracking) that only needs the request's. With a callback of the
user's (Langfuse, OpenTelemetry, their own class, in the LiteLLM config or added later), every
internal call is logged as before, so it sees them all.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from composite_cli.config import Settings
from composite_cli.events import Event, RunStarted
from composite_cli.litellm_loader import get_litellm, registered_callbacks, sub_call
from composite_cli.provider import CompositeLLM

# The proxy registers its own hooks (rate and budget limiters, its service logger, spend tracking)
# as callbacks; they read a request's key, which an internal call has none of.
PROXY_OWN_MODULES = ("litellm.proxy.", "litellm._service_logger")


@dataclass
class RunSlot:
    """Where a request's run ids land (a tool loop or a retry may start more than one run)."""

    run_ids: list[str] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_ids.append(event.run_id)


current_slot: ContextVar[RunSlot | None] = ContextVar("composite_serve_run_slot", default=None)


class ServeCompositeLLM(CompositeLLM):
    """CompositeLLM for the server: source "serve", and run ids handed to the request's RunSlot."""

    def use_settings(self, settings: Settings) -> None:
        """Serve with these settings (the worker's, plus the `--allow-code` prefixes it was
        started with) instead of reading them from the environment on first use."""
        self._settings = settings

    def request_subscribers(self) -> list[Any]:
        # Called in the request's own context (the sync entry points then run the engine on
        # another thread's loop, where the request's context variables are not set).
        slot = current_slot.get()
        return [slot] if slot is not None else []

    def run_scope(self, logging_obj: Any) -> contextlib.AbstractContextManager[Any]:
        """The run's calls as LiteLLM sub-calls of the request, unless a user's callback is
        registered (see the module docstring)."""
        if users_callbacks(get_litellm()):
            return contextlib.nullcontext()
        return sub_call(getattr(logging_obj, "litellm_call_id", None))


def users_callbacks(litellm: Any) -> bool:
    """Whether a callback other than the proxy's own hooks is registered with LiteLLM (a name such
    as "langfuse", an integration, a class of the user's)."""
    return any(
        isinstance(callback, str) or not type(callback).__module__.startswith(PROXY_OWN_MODULES)
        for callback in registered_callbacks(litellm)
    )


handler = ServeCompositeLLM(source="serve", chunk_hidden_params=False)
