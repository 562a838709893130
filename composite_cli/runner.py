"""Run modes on behalf of a front end: load the mode, pick the profile, record the trace.

Front ends (CLI, TUI, provider, server) use this rather than wiring the engine and the trace
store themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from composite_cli.config import Profile, Settings
from composite_cli.engine.executor import run_mode
from composite_cli.engine.library import ModeLibrary
from composite_cli.engine.runtime import RunRequest, RunResult
from composite_cli.engine.spec import ModeSpec
from composite_cli.events import Subscriber
from composite_cli.traces.cache import CallCache
from composite_cli.traces.recorder import TraceRecorder
from composite_cli.traces.store import TraceStore


class Runner:
    """Holds the mode library and the trace store for one process (or one front end)."""

    def __init__(self, settings: Settings, *, trace: bool = True, content: bool | None = None):
        self.settings = settings
        self.library = ModeLibrary.from_settings(settings)
        self.store: TraceStore | None = TraceStore(settings.db_path) if trace else None
        self.content = (not settings.no_content) if content is None else content
        self._recorder = TraceRecorder(self.store, content=self.content) if self.store else None
        self._cache: CallCache | None = None

    @property
    def cache(self) -> CallCache | None:
        """The call cache in this runner's trace database (None when tracing is off)."""
        if self._cache is None and self.store is not None:
            self._cache = CallCache(self.store)
        return self._cache

    def mode(self, name: str) -> ModeSpec:
        return self.library.load(name)

    def profile(self, name: str | None = None) -> Profile:
        return self.settings.profile if name is None else self.settings.profile_named(name)

    async def run(
        self,
        mode: str | ModeSpec,
        request: RunRequest,
        *,
        profile: Profile | None = None,
        subscribers: Iterable[Subscriber] = (),
        run_id: str | None = None,
        cache: bool = False,
        timeout: float | None = None,
    ) -> RunResult:
        """Run a mode (by name or spec) and record it. Raises what ended the run.

        With `cache=True` (needs tracing), identical model requests are replayed from the
        trace database's call cache. `timeout` bounds the whole run (see run_mode). A request
        with `tools` to a mode that cannot use them is refused first: BadParameter `tools`."""
        spec = self.mode(mode) if isinstance(mode, str) else mode
        # A mode whose models never see the client's tools refuses them (never a silent drop).
        spec.check_request_tools(request.tools, request.tool_choice, request.params)
        subs = self.open_subscribers(subscribers)
        return await run_mode(
            spec,
            request,
            profile=profile or self.settings.profile,
            subscribers=subs,
            run_id=run_id,
            cache=self.cache if cache else None,
            timeout=timeout,
        )

    def open_subscribers(self, extra: Iterable[Subscriber] = ()) -> list[Subscriber]:
        """Open the trace database (when tracing) and return its recorder, first, followed by
        `extra`: the subscribers of one run."""
        subs: list[Subscriber] = list(extra)
        if self._recorder is not None and self.store is not None:
            self.store.open()
            subs.insert(0, self._recorder)
        return subs

    def flush(self) -> None:
        if self.store is not None:
            self.store.flush()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
        if self.store is not None:
            self.store.close()


def stop_reason(stopped_by: str | None) -> str:
    """What stopped a partial run, in words: the cap the step named, or a general statement."""
    return stopped_by or "a cap (the step did not name it)"


def stop_sentence(mode: str, stopped_by: str | None) -> str:
    """How every front end says a run is partial (no final period, so a caller can add to it)."""
    return f"{mode} stopped at {stop_reason(stopped_by)} before it finished; the answer is its best so far"


def run_info(result: RunResult, mode: str | None = None) -> dict[str, Any]:
    """composite's own block of a response: the run, its totals and its status.

    `status` is "ok" or "partial"; a partial run names the cap that stopped it in `stopped_by`,
    and `notes` carries facts from the final value (e.g. which path answered). `cost_usd` is None
    when a call's model has no price in LiteLLM's table; `unpriced_models` names those models."""
    return {
        "run_id": result.run_id,
        "mode": mode or result.mode,
        "profile": result.profile,
        "calls": result.calls,
        "cost_usd": result.cost_usd,
        "unpriced_models": list(result.unpriced_models),
        "latency_ms": round(result.latency_ms, 3),
        "status": result.status,
        "stopped_by": result.stopped_by,
        "notes": dict(result.notes),
    }


def completion_dict(result: RunResult, model: str, created: int) -> dict[str, Any]:
    """An OpenAI chat.completion object for a run, plus composite's own block."""
    return {
        "id": f"chatcmpl-{result.run_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": result.message, "finish_reason": result.finish_reason}],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
        "composite": run_info(result),
    }
