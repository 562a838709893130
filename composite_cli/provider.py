"""The LiteLLM provider: every mode as a model, `composite/<mode>`.

    import composite_cli, litellm
    composite_cli.register()
    litellm.completion(model="composite/moa-v1", messages=[...])

Sync, async, streaming and async streaming all run the engine; streaming sends the final step's
tokens as they arrive. Errors reach the caller as LiteLLM exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from composite_cli.config import Profile, Settings, load_settings
from composite_cli.engine.runtime import RunRequest, RunResult
from composite_cli.errors import (
    BadParameter,
    BadRequest,
    CompositeError,
    ConfigError,
    ModeValidationError,
    RunLimitExceeded,
    RunTimeout,
    UnknownModeError,
    one_line,
)
from composite_cli.events import Event, RunStarted, TokenDelta
from composite_cli.litellm_loader import add_custom_provider, get_litellm
from composite_cli.runner import Runner, run_info

PROVIDER = "composite"
# Caller options that apply to the final step (the one whose answer the caller gets).
GENERATION_KEYS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "parallel_tool_calls",
    "logit_bias",
)
# `n` is not passed to the final step (it would be billed n answers and give one): a request
# with n > 1 runs the mode n times, one choice per run (see CompositeLLM._run).
MAX_N = 128
_COMPOSITE_KEYS = {"profile", "params"}
T = TypeVar("T")

litellm = get_litellm()


class _BackgroundLoop:
    """One event loop in a daemon thread, for sync calls made from any thread (or from inside
    someone else's running loop, where asyncio.run would fail)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="composite-provider-loop", daemon=True).start()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop())


_background = _BackgroundLoop()


def to_litellm_error(exc: BaseException, model: str, *, caller_params: bool = False) -> BaseException:
    """The LiteLLM exception a caller should see for a composite error.

    `caller_params`: the request set mode parameters. A run that then needs more calls than the
    mode's max_calls is the request's doing (say, `extra_layers: 20`): a bad request, not a
    server error. Without them the mode file itself is wrong, and it stays a server error."""
    line = one_line(exc)  # the CLI's wording: one line, secrets masked (None: not ours)
    if isinstance(exc, RunLimitExceeded) and exc.limit == "max_calls" and caller_params:
        error = litellm.BadRequestError(
            message=f"{line}: the request's composite.params need more model calls than the mode "
            "allows; use smaller values",
            model=model,
            llm_provider=PROVIDER,
        )
        error.param = "composite.params"  # the proxy relays it as the OpenAI error's `param`
        return error
    if isinstance(exc, (BadRequest, UnknownModeError, ConfigError, ModeValidationError)):
        error = litellm.BadRequestError(message=line, model=model, llm_provider=PROVIDER)
        if isinstance(exc, BadParameter):
            error.param = exc.param
        return error
    if isinstance(exc, RunTimeout) or (isinstance(exc, RunLimitExceeded) and exc.limit == "deadline"):
        return litellm.Timeout(message=line, model=model, llm_provider=PROVIDER)
    if isinstance(exc, CompositeError):
        return litellm.APIError(status_code=500, message=line, model=model, llm_provider=PROVIDER)
    return exc


class CompositeLLM(litellm.CustomLLM):  # type: ignore[name-defined]
    """A LiteLLM custom provider that runs composite modes."""

    def __init__(
        self, settings: Settings | None = None, *, source: str = "python", chunk_hidden_params: bool = True
    ):
        """`chunk_hidden_params`: put composite's block in a stream's `_hidden_params` too (for
        callers in this process; a server leaves it out, see final_chunks)."""
        super().__init__()
        self._settings = settings
        self.source = source
        self.chunk_hidden_params = chunk_hidden_params
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    @property
    def runner(self) -> Runner:
        with self._lock:
            if self._runner is None:
                # Read lazily so $COMPOSITE_PROFILE / $COMPOSITE_CONFIG set after import count.
                self._runner = Runner(self._settings or load_settings())
            return self._runner

    def request_subscribers(self) -> list[Any]:
        """Extra event subscribers for the request being handled (called in the caller's context,
        before the run starts; a server uses it to learn each request's run id)."""
        return []

    def run_scope(self, logging_obj: Any) -> contextlib.AbstractContextManager[Any]:
        """What a request's runs execute inside (their model calls included): nothing here; a
        server makes them LiteLLM sub-calls of the request (see serve.handler)."""
        return contextlib.nullcontext()

    # -- request handling ---------------------------------------------------------------------
    @staticmethod
    def _choices(optional: dict[str, Any], stream: bool) -> int:
        """How many choices the caller asked for (`n`): each one is a run of the mode."""
        n = optional.get("n")
        if n is None:
            return 1
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise BadParameter(f"'n' must be an integer from 1 to {MAX_N}, not {n!r}", "n")
        if n > 1 and stream:
            raise BadParameter(
                f"'n' {n} is not supported with stream=true for composite modes "
                "(a streamed mode sends one answer); send n=1 or stream=false",
                "n",
            )
        return n

    def _request(
        self, model: str, kwargs: dict[str, Any], stream: bool
    ) -> tuple[str, RunRequest, Profile | None, int]:
        optional: dict[str, Any] = dict(kwargs.get("optional_params") or {})
        extra_body = optional.pop("extra_body", None) or {}
        options = optional.pop("composite", None)
        if options is None and isinstance(extra_body, dict):
            options = extra_body.get("composite")
        options = options or {}
        if not isinstance(options, dict) or set(options) - _COMPOSITE_KEYS:
            unknown = sorted(set(options) - _COMPOSITE_KEYS) if isinstance(options, dict) else []
            raise BadParameter(
                "composite= must be an object with 'profile' and/or 'params'"
                + (f" (unknown keys: {', '.join(unknown)})" if unknown else ""),
                "composite",
            )
        params = options.get("params") or {}
        if not isinstance(params, dict):
            raise BadParameter("composite.params must be an object of mode parameters", "composite.params")
        profile_name = options.get("profile")
        profile = self.runner.profile(profile_name) if profile_name else None
        logging_obj = kwargs.get("logging_obj")
        details = getattr(logging_obj, "model_call_details", {}) or {}
        user = optional.get("user") or details.get("user")
        mode = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
        request = RunRequest(
            messages=list(kwargs.get("messages") or []),
            tools=optional.get("tools"),
            tool_choice=optional.get("tool_choice"),
            generation={k: optional[k] for k in GENERATION_KEYS if optional.get(k) is not None},
            params=dict(params),
            source=self.source,
            user=user if isinstance(user, str) else None,
            stream=stream,
        )
        return mode, request, profile, self._choices(optional, stream)

    async def _run(
        self, model: str, kwargs: dict[str, Any], stream: bool, subscribers: list[Any]
    ) -> tuple[str, list[RunResult]]:
        """The mode's runs for one request: one, or `n` side by side (one per choice)."""
        request: RunRequest | None = None
        try:
            mode, request, profile, n = self._request(model, kwargs, stream)
            spec = self.runner.mode(mode)
            timeout = caller_timeout(kwargs.get("timeout"))
            subscribers = [*subscribers, OuterEventTag(kwargs.get("logging_obj"))]
            runs = [
                self.runner.run(
                    spec,
                    replace(request, messages=list(request.messages)),
                    profile=profile,
                    subscribers=subscribers,
                    timeout=timeout,
                )
                for _ in range(n)
            ]
            with self.run_scope(kwargs.get("logging_obj")):
                results = await _all_or_none(runs)
        except Exception as exc:
            caller_params = request is not None and bool(request.params)
            mapped = to_litellm_error(exc, f"{PROVIDER}/{model}", caller_params=caller_params)
            if mapped is exc:
                raise
            raise mapped from None
        return spec.name, results

    # -- the four entry points LiteLLM calls -----------------------------------------------------
    def completion(self, *args: Any, **kwargs: Any) -> Any:
        future = _background.submit(self._run(kwargs["model"], kwargs, False, self.request_subscribers()))
        try:
            name, results = future.result()
        except BaseException:
            future.cancel()
            raise
        return fill_response(kwargs["model_response"], name, results)

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        name, results = await self._run(kwargs["model"], kwargs, False, self.request_subscribers())
        return fill_response(kwargs["model_response"], name, results)

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        items: queue.Queue[Any] = queue.Queue()
        feed = _StreamFeed(items.put)
        extra = self.request_subscribers()

        async def run() -> tuple[str, list[RunResult]]:
            try:
                return await self._run(kwargs["model"], kwargs, True, [*extra, feed])
            finally:
                items.put(_DONE)

        future = _background.submit(run())
        try:
            while (item := items.get()) is not _DONE:
                yield item if isinstance(item, StreamChunk) else text_chunk(item, feed.run_id)
            _, (result,) = future.result()
            yield from final_chunks(result, hidden=self.chunk_hidden_params)
        finally:
            if not future.done():
                future.cancel()  # the caller stopped reading: stop the run and its calls

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        items: asyncio.Queue[Any] = asyncio.Queue()
        feed = _StreamFeed(items.put_nowait)
        extra = self.request_subscribers()

        async def run() -> tuple[str, list[RunResult]]:
            try:
                return await self._run(kwargs["model"], kwargs, True, [*extra, feed])
            finally:
                items.put_nowait(_DONE)

        task = asyncio.ensure_future(run())
        try:
            while (item := await items.get()) is not _DONE:
                yield item if isinstance(item, StreamChunk) else text_chunk(item, feed.run_id)
            _, (result,) = await task
            for chunk in final_chunks(result, hidden=self.chunk_hidden_params):
                yield chunk
        finally:
            if not task.done():
                task.cancel()


_DONE = object()


class OuterEventTag:
    """Tags the caller's own LiteLLM event (the `composite/<mode>` call, which litellm.callbacks
    see with the run's summed `response_cost`) with the run id as soon as the run starts:
    `composite_run_id`, `composite_mode` and `composite_internal: False` in its metadata, and the
    same in `spend_logs_metadata` (the metadata LiteLLM keeps in its standard logging payload and
    a proxy's spend logs). The run's own calls carry `composite_internal: True` and the same
    `composite_run_id` (calls.py), so a callback can count spend once and join the two. A request
    with n > 1 lists every run in `composite_run_ids`."""

    def __init__(self, logging_obj: Any):
        self.logging_obj = logging_obj
        self.run_ids: list[str] = []

    def __call__(self, event: Event) -> None:
        if not isinstance(event, RunStarted):
            return
        self.run_ids.append(event.run_id)
        keys: dict[str, Any] = {
            "composite_run_id": self.run_ids[0],
            "composite_mode": event.mode,
            "composite_internal": False,
        }
        if len(self.run_ids) > 1:
            keys["composite_run_ids"] = list(self.run_ids)
        params = getattr(self.logging_obj, "litellm_params", None)
        details = getattr(self.logging_obj, "model_call_details", None)
        holders = [params, details.get("litellm_params") if isinstance(details, dict) else None]
        for holder in {id(h): h for h in holders if isinstance(h, dict)}.values():
            metadata = holder.get("metadata")
            if not isinstance(metadata, dict):
                metadata = holder["metadata"] = {}
            metadata.update(keys)
            spend = metadata.get("spend_logs_metadata")
            metadata["spend_logs_metadata"] = {**(spend if isinstance(spend, dict) else {}), **keys}


class _StreamFeed:
    """The subscriber of a streamed run: its id as soon as it starts, its final step's tokens.

    A stream starts when the run does: the first chunk (role `assistant`, no text, the run id as
    `composite_run_id`; the `composite` block stays on the finishing chunk) goes out at once, so
    a client's read timeout is not spent waiting for the earlier steps (LiteLLM drops a chunk with
    neither text nor provider fields)."""

    def __init__(self, put: Any):
        self.put = put
        self.run_id: str | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self.run_id is None:
            self.run_id = event.run_id
            self.put(_chunk(event.run_id, provider_specific_fields={"composite_run_id": event.run_id}))
        elif isinstance(event, TokenDelta):
            self.put(event.text)


class StreamChunk(dict[str, Any]):
    """A GenericStreamingChunk with an `id`: LiteLLM's stream wrapper gives every chunk of the
    stream the id of the first chunk that has one, so a stream's id is `chatcmpl-<run id>`."""

    id: str | None = None


def response_id(run_id: str | None) -> str | None:
    """The response `id` of a run's answer: `chatcmpl-<run id>`, so a body joins to its trace."""
    return f"chatcmpl-{run_id}" if run_id else None


def _chunk(run_id: str | None, **fields: Any) -> StreamChunk:
    chunk = StreamChunk(
        {"text": "", "tool_use": None, "is_finished": False, "finish_reason": "", "usage": None, "index": 0}
    )
    chunk.update(fields)
    chunk.id = response_id(run_id)
    return chunk


def caller_timeout(value: Any) -> float | None:
    """The caller's `timeout=` in seconds, the bound on the whole run; None when the caller set
    none (LiteLLM then passes its own fallback, which must not cut a mode's longer deadline)."""
    if isinstance(value, httpx.Timeout):
        limits = [t for t in (value.connect, value.read, value.write, value.pool) if t is not None]
        value = max(limits) if limits else None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadParameter(f"'timeout' must be a number of seconds, not {value!r}", "timeout") from None
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value <= 0 or not math.isfinite(value):
        raise BadParameter(f"'timeout' must be a positive number of seconds, not {value!r}", "timeout")
    fallback = litellm.constants.COMPLETION_HTTP_FALLBACK_SECONDS
    if float(value) == fallback and not litellm.request_timeout_explicitly_set:
        return None
    return float(value)


async def _all_or_none(runs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every run's result, in order; when one fails the others are cancelled and its error raised."""
    if len(runs) == 1:
        return [await runs[0]]
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # no-op for the finished ones
        await asyncio.gather(*tasks, return_exceptions=True)


def text_chunk(text: str, run_id: str | None = None) -> StreamChunk:
    return _chunk(run_id, text=text)


def final_chunks(result: RunResult, *, hidden: bool = False) -> Iterator[StreamChunk]:
    """Tool calls (one chunk each), then the finishing chunk with usage and the summed cost.

    `usage.cost` is how LiteLLM prices a streamed response of a provider it has no price for: its
    stream wrapper passes it to the final usage chunk, stream_chunk_builder and the outer
    callback's `response_cost`. With `hidden`, the finishing chunk's `_hidden_params` also get
    composite's block (LiteLLM sets each provider field as an attribute of the chunk; it also
    copies them into the chunk's delta, which a server would send, hence only in-process)."""
    for i, call in enumerate(result.message.get("tool_calls") or []):
        fn = call.get("function") or {}
        tool_use = {
            "id": call.get("id"),
            "type": "function",
            "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""},
            "index": i,
        }
        yield _chunk(result.run_id, tool_use=tool_use)
    usage: dict[str, Any] = {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
    if result.cost_usd is not None:
        usage["cost"] = result.cost_usd
    info = run_info(result)
    # LiteLLM sets these as attributes of the chunk: `chunk.composite` (status included).
    fields: dict[str, Any] = {"composite": info}
    if hidden:
        fields["_hidden_params"] = {"composite": info}
    yield _chunk(
        result.run_id,
        is_finished=True,
        finish_reason=result.finish_reason,
        usage=usage,
        provider_specific_fields=fields,
    )


def fill_response(response: Any, name: str, results: list[RunResult]) -> Any:
    """Fill LiteLLM's ModelResponse: one choice per run, usage and cost summed over every run's
    calls, and composite's block (run id, status; a partial run's `finish_reason` is "length" and
    `stopped_by` names the cap)."""
    response.model = f"{PROVIDER}/{name}"
    response.id = response_id(results[0].run_id)
    response.created = int(time.time())
    response.choices = [
        litellm.Choices(
            index=i,
            message=litellm.Message(
                content=result.message.get("content"),
                role="assistant",
                tool_calls=result.message.get("tool_calls") or None,
            ),
            finish_reason=result.finish_reason,
        )
        for i, result in enumerate(results)
    ]
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    usage = litellm.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    cost = total_cost(results)
    if cost is not None:
        usage.cost = cost  # what litellm.completion_cost() reads for this response
    response.usage = usage
    info = merged_info(results, name)
    # The proxy sends these as `llm_provider-x-composite-...` headers; serve's edge renames them.
    headers = {"x-composite-run-id": info["run_id"], "x-composite-status": info["status"]}
    if cost is not None:
        headers["llm_provider-x-litellm-response-cost"] = str(cost)
    response._hidden_params["additional_headers"] = headers
    if cost is not None:
        # LiteLLM's own logging prices the response from this, instead of looking up a price
        # for `composite/<mode>` (which it does not have, slowly).
        response._hidden_params["response_cost"] = cost
    response._hidden_params["composite"] = info
    response.composite = info  # in the response body too (model_dump), e.g. over HTTP
    return response


def total_cost(results: list[RunResult]) -> float | None:
    """The summed cost of the runs, None when any run's cost is unknown."""
    costs = [r.cost_usd for r in results]
    return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


def merged_info(results: list[RunResult], name: str) -> dict[str, Any]:
    """composite's block for a response of one or more runs (`n` > 1): the first run's block,
    with calls, cost and status over all of them and every run id in `run_ids`."""
    info = run_info(results[0], name)
    if len(results) > 1:
        info["run_ids"] = [r.run_id for r in results]
        info["calls"] = sum(r.calls for r in results)
        info["cost_usd"] = total_cost(results)
        info["unpriced_models"] = list(dict.fromkeys(m for r in results for m in r.unpriced_models))
        info["latency_ms"] = round(max(r.latency_ms for r in results), 3)
        partial = [r for r in results if r.status != "ok"]
        if partial:
            info["status"] = partial[0].status
            info["stopped_by"] = partial[0].stopped_by
    return info


def register(
    settings: Settings | None = None,
    *,
    source: str = "python",
) -> CompositeLLM:
    """Register the `composite` provider with LiteLLM; returns the handler.

    Settings default to the environment: $COMPOSITE_CONFIG, $COMPOSITE_PROFILE, $COMPOSITE_DB.
    """
    handler = CompositeLLM(settings, source=source)
    add_custom_provider(litellm, PROVIDER, handler)
    if settings is not None:
        # The loader told LiteLLM about the modes of the environment's settings; these may differ.
        from composite_cli.model_metadata import register_modes

        register_modes(settings)
    return handler


# For a LiteLLM proxy config: custom_handler: composite_cli.provider.handler (its runs are
# recorded source=proxy; `composite serve` uses composite_cli.serve.handler, source=serve).
handler = CompositeLLM(source="proxy", chunk_hidden_params=False)


def _local_handler() -> Any:
    """The embedded model's provider, as registered by the loader (a proxy config that sets its own
    custom_provider_map lists it too, so `local/...` keeps working there)."""
    for entry in litellm.custom_provider_map or []:
        if entry.get("provider") == "local":
            return entry["custom_handler"]
    from composite_cli.local import LocalLLM

    return LocalLLM()


# custom_handler: composite_cli.provider.local_handler
local_handler = _local_handler()
