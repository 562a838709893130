"""The provider instances the proxy loads by dotted path (see config.provider_map).

`handler` runs every request as a traced run with `source="serve"` and tells the HTTP edge the
run's id as soon as the run starts, so even a streamed response can carry `x-composite-run-id`
in its headers. The edge puts a `RunSlot` in a context variable for each request; the run fills it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from composite_cli.config import Settings
from composite_cli.events import Event, RunStarted
from composite_cli.provider import CompositeLLM


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


handler = ServeCompositeLLM(source="serve", chunk_hidden_params=False)
