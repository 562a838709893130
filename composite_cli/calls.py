"""The one traced wrapper around `litellm.acompletion`.

Every model call composite makes goes through `complete()`. It resolves the alias through the
profile, applies timeouts, retries with backoff, measures latency, tokens and cost (LiteLLM's
pricing; None when the price is unknown), and hands a `CallRecord` (events.py; frozen, built once
when the call ends) to its host (the engine's run context), which passes it on to the trace store.
Tests replace `litellm_acompletion` with a fake.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from composite_cli import http_retry
from composite_cli.config import Profile
from composite_cli.errors import describe_error
from composite_cli.events import CallRecord
from composite_cli.litellm_loader import get_litellm, registered_callbacks, sub_call
from composite_cli.redact import sanitize_params

# Errors worth retrying: the provider was busy or the network blinked.
_RETRYABLE = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
)


# The HTTP attempts of the call being made (set by `complete()`, appended to by
# `litellm_acompletion`): a context variable, so concurrent calls each see their own list.
_ATTEMPTS: ContextVar[list[dict[str, Any]] | None] = ContextVar("composite_http_attempts", default=None)


# What sends one request: LiteLLM's `acompletion`, unless a front end installed another supported
# LiteLLM entry point with `use_dispatch` (`composite serve` sends the model groups its proxy's
# router knows through that router, so the user's limits, cooldowns and deployments govern them).
_DISPATCH: Callable[..., Awaitable[Any]] | None = None


def use_dispatch(dispatch: Callable[..., Awaitable[Any]] | None) -> None:
    """Send every model call through `dispatch(**kwargs)` (None: back to `litellm.acompletion`)."""
    global _DISPATCH
    _DISPATCH = dispatch


async def litellm_acompletion(**kwargs: Any) -> Any:
    """The single place that calls LiteLLM, one HTTP request per LiteLLM call.

    The SDKs under LiteLLM retry quietly (the openai SDK twice by default), so a trace would show
    one call where the upstream saw three. Here LiteLLM is told not to retry (`max_retries=0`),
    and the same retries are made in this loop (the profile's `max_retries` and `num_retries`, else
    LiteLLM's default for its built-in providers; none for custom providers, which never retried),
    with the SDK's backoff and `Retry-After`. Every attempt goes to the call's attempt list.
    The test suite's fake model replaces this function (and so stands for LiteLLM and the network).
    """
    litellm = get_litellm()
    kwargs, budget = http_retry.retry_budget(litellm, kwargs)
    attempts = _ATTEMPTS.get()
    for attempt in itertools.count():
        started = time.perf_counter()
        try:
            if _DISPATCH is not None:
                response = await _DISPATCH(**kwargs)
            elif _unlogged(litellm, kwargs):
                with sub_call():  # composite's trace logs it
                    response = await litellm.acompletion(**kwargs)
            else:
                response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            retry = attempt < budget and http_retry.retryable(exc)
            if attempts is not None:
                attempts.append(http_retry.attempt_entry(kwargs, started, describe_error(exc), retry))
            if not retry:
                raise
            await asyncio.sleep(http_retry.backoff(exc, attempt))
            continue
        if attempts is not None:
            attempts.append(http_retry.attempt_entry(kwargs, started, None, False))
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def _unlogged(litellm: Any, kwargs: dict[str, Any]) -> bool:
    """Whether no LiteLLM callback, global or passed with this call, and no budget would read the
    per-call logging LiteLLM does after each answer (its standard logging payload, a second pricing
    pass, the success-handler task and thread-pool job)."""
    if getattr(litellm, "max_budget", None) or registered_callbacks(litellm):
        return False
    return not any("callback" in key for key in kwargs)


_ID_PREFIX = uuid.uuid4().hex[:8]  # random per process, so ids from several machines never collide
_ID_COUNTER = itertools.count()


def new_id() -> str:
    """A unique id that sorts by creation time: time, a per-process random part, a counter."""
    return f"{time.time_ns():x}-{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFF:06x}"


@dataclass
class CallRequest:
    """What a step asks of one model call."""

    alias: str
    messages: list[dict[str, Any]]
    name: str
    parent_id: str | None
    params: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    timeout: float | None = None
    retries: int = 0
    backoff: float = 0.5
    on_delta: Callable[[str], None] | None = None
    # Keeps deliberately repeated identical requests (fan-out samples) apart in the cache.
    cache_salt: str = ""


class CallHost(Protocol):
    """What `complete()` needs from whoever runs it (the engine's run context)."""

    run_id: str
    profile: Profile

    def reserve_call(self) -> None:
        """Count one call against the run's limit; raise RunLimitExceeded when over."""

    def remaining_time(self) -> float | None:
        """Seconds until the run's deadline (None: no deadline)."""

    def deadline_error(self) -> Exception:
        """The error a call cut short by the run's deadline raises (RunLimitExceeded)."""

    def call_metadata(self) -> dict[str, Any]:
        """Metadata for LiteLLM callbacks (run id, mode, ...)."""

    def call_started(self, record: CallRecord) -> None:
        """Hear that a call is starting (for live progress)."""

    def call_delta(self, call_id: str, text: str) -> None:
        """Hear a piece of an internal call's text (only when the request set stream_all)."""

    def record_call(self, record: CallRecord) -> None:
        """Receive the finished record (ok, error or cancelled)."""


def _message_dict(message: Any) -> dict[str, Any]:
    data = message.model_dump() if hasattr(message, "model_dump") else dict(message)
    out: dict[str, Any] = {"role": data.get("role") or "assistant", "content": data.get("content")}
    tool_calls = data.get("tool_calls")
    if tool_calls:
        out["tool_calls"] = [
            {
                "id": tc.get("id"),
                "type": tc.get("type") or "function",
                "function": {
                    "name": (tc.get("function") or {}).get("name"),
                    "arguments": (tc.get("function") or {}).get("arguments") or "",
                },
            }
            for tc in tool_calls
        ]
    return out


_UNPRICED: set[str] = set()  # models LiteLLM has no price for (asking again is slow)


def _cost(litellm: Any, response: Any, model: str) -> float | None:
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if isinstance(cost, (int, float)):
        return float(cost)
    if model in _UNPRICED:
        return None
    try:
        return float(litellm.completion_cost(completion_response=response))
    except Exception:  # noqa: BLE001 - LiteLLM raises many types for "no price known"
        _UNPRICED.add(model)
        return None  # unknown price: recorded as null, never a made-up 0


def _is_retryable(exc: BaseException) -> bool:
    return type(exc).__name__ in _RETRYABLE or isinstance(exc, asyncio.TimeoutError)


REPETITION = "repetition"
_GUARD_MESSAGE = "repeating the same chunk"  # LiteLLM's streaming guard (CustomStreamWrapper)


def _delta_text(chunk: Any) -> str | None:
    choices = getattr(chunk, "choices", None) or []
    text = getattr(choices[0].delta, "content", None) if choices else None
    return text if isinstance(text, str) else None


class RepeatedChunks:
    """LiteLLM's rule for a looping stream, applied gently: `limit` identical text chunks in a row.

    LiteLLM's guard raises mid-stream when a model sends the same chunk (over 2 characters)
    `litellm.REPEATED_STREAMING_CHUNK_LIMIT` times in a row. Here a chunk equal to the one before is
    held back instead of forwarded; a different chunk releases the held ones (as ONE piece of text, so
    a stream built from what we forward never shows identical chunks in a row), and reaching the
    limit, or the guard's exception, ends the answer with the held repeats dropped. So what the
    caller streamed and what the record keeps are the same text: one copy of the repeated chunk.
    """

    def __init__(self, limit: int):
        self.limit = max(2, limit)
        self.last: str | None = None
        self.count = 0  # identical chunks in a row, the first included
        self.held: list[Any] = []

    def add(self, chunk: Any, text: str) -> tuple[list[Any], list[str]]:
        """Take one text chunk; returns the chunks to keep and the texts to forward now."""
        if len(text) > 2 and text == self.last:
            self.count += 1
            self.held.append(chunk)
            return [], []
        released = self.release()
        self.last, self.count = text, 1
        return [*released[0], chunk], [*released[1], text]

    def release(self) -> tuple[list[Any], list[str]]:
        """The held chunks, and their text as one piece (the run of repeats ended naturally)."""
        held, self.held = self.held, []
        return held, ["".join(_delta_text(c) or "" for c in held)] if held else []

    @property
    def looping(self) -> bool:
        return self.count >= self.limit


def is_repetition_guard(exc: BaseException) -> bool:
    """Whether `exc` is LiteLLM's repeated-chunk guard (possibly wrapped in MidStreamFallbackError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _GUARD_MESSAGE in str(current):
            return True
        inner = getattr(current, "original_exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)
    return False


async def _attempt(litellm: Any, kwargs: dict[str, Any], on_delta: Callable[[str], None] | None) -> Any:
    if on_delta is None:
        return await litellm_acompletion(**kwargs)
    stream = await litellm_acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
    chunks: list[Any] = []
    repeats = RepeatedChunks(int(getattr(litellm, "REPEATED_STREAMING_CHUNK_LIMIT", 100)))
    looped = False
    try:
        async for chunk in stream:
            text = _delta_text(chunk)
            if not text:
                chunks.append(chunk)
                continue
            kept, texts = repeats.add(chunk, text)
            chunks.extend(kept)
            for piece in texts:
                on_delta(piece)
            if repeats.looping:
                looped = True
                break
    except Exception as exc:
        if not is_repetition_guard(exc):
            raise
        looped = True
    if looped:
        await _close(stream)
    else:
        kept, texts = repeats.release()
        chunks.extend(kept)
        for piece in texts:
            on_delta(piece)
    response = litellm.stream_chunk_builder(chunks, messages=kwargs.get("messages"))
    if looped:
        _mark_stopped(response, REPETITION)
    return response


async def _close(stream: Any) -> None:
    """Stop a stream we no longer read (for the embedded model this stops generation)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def _mark_stopped(response: Any, reason: str) -> None:
    """Mark a response composite cut short: finish_reason "length", and why, where providers say it."""
    choice = response.choices[0]
    choice.finish_reason = "length"
    fields = dict(getattr(choice.message, "provider_specific_fields", None) or {})
    fields["stopped"] = reason
    choice.message.provider_specific_fields = fields


def _provider_field(message: Any, key: str) -> str | None:
    """One of the facts a provider (or composite) reports in `message.provider_specific_fields`:
    `stopped` (why the answer was cut short) or `note`."""
    fields = getattr(message, "provider_specific_fields", None)
    value = fields.get(key) if isinstance(fields, dict) else None
    return str(value) if value else None


def build_kwargs(host: CallHost, request: CallRequest, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """LiteLLM keyword arguments: profile params < step params, plus tools and metadata."""
    kwargs = dict(base) if base is not None else host.profile.resolve(request.alias)
    kwargs.update({k: v for k, v in request.params.items() if v is not None})
    kwargs["messages"] = request.messages
    if request.tools:
        kwargs["tools"] = request.tools
        if request.tool_choice is not None:
            kwargs["tool_choice"] = request.tool_choice
    metadata = dict(kwargs.get("metadata") or {})
    metadata.update(host.call_metadata())
    metadata["composite_call"] = request.name
    # a user's litellm.callbacks see these and the outer `composite/<mode>` event (composite_internal
    # False, same composite_run_id): summing only one of the two counts spend once
    metadata["composite_internal"] = True
    kwargs["metadata"] = metadata
    return kwargs


def _stream_all(host: CallHost) -> bool:
    return bool(getattr(getattr(host, "request", None), "stream_all", False))


def _logged(kwargs: dict[str, Any]) -> dict[str, Any]:
    return sanitize_params({k: v for k, v in kwargs.items() if k not in ("messages", "metadata")})


async def complete(host: CallHost, request: CallRequest) -> CallRecord:
    """Make one traced model call. Returns the record; raises the provider's error on failure.

    Each model of the alias is tried in turn (the profile's fallbacks), each with the step's
    retries; the record names the model that answered and lists the ones that failed. The record
    is built once per way out (cached, ok, error, cancelled) from what the call learnt on its way.
    """
    host.reserve_call()
    litellm = get_litellm()
    candidates = host.profile.candidates(request.alias)
    kwargs = build_kwargs(host, request, candidates[0])
    model = str(kwargs.get("model"))
    logged = _logged(kwargs)  # masked once per model tried, for every record of this call
    call_id = new_id()
    running = CallRecord(
        id=call_id,
        run_id=host.run_id,
        parent_id=request.parent_id,
        name=request.name,
        alias=request.alias,
        model=model,
        started_at=time.time(),
        request={"messages": request.messages, "params": logged},
    )
    host.call_started(running)
    t0 = time.perf_counter()
    cache = getattr(host, "cache", None)
    cache_key = None
    if cache is not None:
        cache_key = cache.key(kwargs, f"{getattr(host, 'cache_salt', '')}|{request.cache_salt}")
        hit = cache.get(cache_key)
        if hit is not None:
            record = _from_cache(running, hit, t0)
            if request.on_delta is not None and record.text:
                request.on_delta(record.text)
            elif _stream_all(host) and record.text:
                host.call_delta(call_id, record.text)
            host.record_call(record)
            return record
    streamed: list[bool] = [False]
    on_delta = None
    if request.on_delta is not None:
        forward = request.on_delta

        def on_delta(text: str) -> None:
            streamed[0] = True
            forward(text)

    elif _stream_all(host):
        # Live text of an internal call (for the TUI): it never reaches the client, so the call
        # may still be retried after some of it arrived.
        def on_delta(text: str) -> None:
            host.call_delta(call_id, text)

    retries = 0  # the step's retries (the HTTP layer's are counted from `attempts`)

    def count_retry() -> None:
        nonlocal retries
        retries += 1

    fallbacks: list[dict[str, str]] = []
    attempts: list[dict[str, Any]] = []  # every HTTP request, filled by litellm_acompletion
    token = _ATTEMPTS.set(attempts)
    try:
        for index, base in enumerate(candidates):
            if index:
                kwargs = build_kwargs(host, request, base)
                model = str(kwargs.get("model"))
                logged = _logged(kwargs)
            try:
                response = await _with_retries(
                    litellm, host, request, model, kwargs, on_delta, streamed, count_retry
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Try the next model unless this was the last, or the client already got text.
                if index == len(candidates) - 1 or streamed[0]:
                    raise
                fallbacks.append({"model": model, "error": describe_error(exc)})
    except BaseException as exc:
        cancelled = isinstance(exc, asyncio.CancelledError)
        sent: dict[str, Any] = {"messages": request.messages, "params": logged}
        if fallbacks and not cancelled:
            sent["fallbacks"] = fallbacks
        record = replace(
            running,
            model=model,
            request=_with_attempts(sent, attempts),
            status="cancelled" if cancelled else "error",
            error="cancelled" if cancelled else describe_error(exc),
            latency_ms=(time.perf_counter() - t0) * 1000,
            fallbacks=fallbacks,
            attempts=len(attempts) or 1,
            retries=retries + _http_retries(attempts),
        )
        host.record_call(record)
        raise
    finally:
        _ATTEMPTS.reset(token)
    record = _answered(
        litellm,
        running,
        response,
        model=model,
        params=logged,
        fallbacks=fallbacks,
        latency_ms=(time.perf_counter() - t0) * 1000,
        attempts=attempts,
        retries=retries,
    )
    if cache is not None and cache_key is not None:
        cache.put(cache_key, record.model, record.response or {})
    host.record_call(record)
    return record


async def _with_retries(
    litellm: Any,
    host: CallHost,
    request: CallRequest,
    model: str,
    kwargs: dict[str, Any],
    on_delta: Callable[[str], None] | None,
    streamed: list[bool],
    count_retry: Callable[[], None],
) -> Any:
    """One model, retried with exponential backoff on transient errors (rate limits, 5xx, timeouts);
    `count_retry` hears each retry."""
    attempt = 0
    while True:
        remaining = host.remaining_time()
        timeout = _effective_timeout(request.timeout, remaining)
        try:
            return await asyncio.wait_for(_attempt(litellm, kwargs, on_delta), timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            if remaining is not None and (request.timeout is None or remaining < request.timeout):
                # The run's deadline, not the call's own timeout, cut this attempt: the run's error,
                # whichever of the two timers the event loop happened to fire first.
                raise host.deadline_error() from None
            exc: Exception = litellm.Timeout(
                message=f"call {request.name!r} to {model} timed out after {timeout or 0:.1f}s",
                model=model,
                llm_provider="composite",
            )
            if attempt >= request.retries or streamed[0]:
                raise exc from None
        except Exception as exc:
            # Text already sent to the client cannot be taken back, so no retry after it.
            if attempt >= request.retries or not _is_retryable(exc) or streamed[0]:
                raise
            delay = request.backoff * (2**attempt) * (0.5 + random.random())
            left = host.remaining_time()
            if left is not None and delay >= left:
                raise
            await asyncio.sleep(delay)
        attempt += 1
        count_retry()


def _http_retries(attempts: list[dict[str, Any]]) -> int:
    """The HTTP layer's retries (a record's `retries` counts them with the step's own)."""
    return sum(1 for a in attempts if a.get("retried"))


def _with_attempts(into: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """`into` with the attempts (each failed one's error) when there was more than one."""
    return {**into, "attempts": list(attempts)} if len(attempts) > 1 else into


def _from_cache(running: CallRecord, hit: dict[str, Any], t0: float) -> CallRecord:
    """A replayed answer: same message and tokens, no cost this time, marked cached."""
    usage = hit.get("usage") or {}
    return replace(
        running,
        message=dict(hit.get("message") or {"role": "assistant", "content": ""}),
        finish_reason=hit.get("finish_reason") or "stop",
        stopped=hit.get("stopped"),
        note=hit.get("note"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cost_usd=0.0,
        cached=True,
        status="ok",
        response=hit,
        latency_ms=(time.perf_counter() - t0) * 1000,
    )


def _effective_timeout(step_timeout: float | None, remaining: float | None) -> float | None:
    options = [t for t in (step_timeout, remaining) if t is not None]
    return max(0.0, min(options)) if options else None


def _answered(
    litellm: Any,
    running: CallRecord,
    response: Any,
    *,
    model: str,
    params: dict[str, Any],
    fallbacks: list[dict[str, str]],
    latency_ms: float,
    attempts: list[dict[str, Any]],
    retries: int,
) -> CallRecord:
    """The record of a call `model` answered with `response`."""
    choice = response.choices[0]
    message = _message_dict(choice.message)
    stopped = _provider_field(choice.message, "stopped")
    note = _provider_field(choice.message, "note")
    # A reply that carries tool calls finishes with "tool_calls", whatever the provider said;
    # one cut short finishes with "length", whatever the provider said.
    if message.get("tool_calls"):
        finish_reason = "tool_calls"
    elif stopped:
        finish_reason = "length"
    else:
        finish_reason = choice.finish_reason or "stop"
    usage = getattr(response, "usage", None)
    # An answer LiteLLM's own cache (litellm.cache) replayed is marked cached, as composite's are.
    cached = bool((getattr(response, "_hidden_params", None) or {}).get("cache_hit"))
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    kept = {
        **({"fallbacks": fallbacks} if fallbacks else {}),
        "id": getattr(response, "id", None),
        "model": getattr(response, "model", None),
        "message": message,
        "finish_reason": finish_reason,
        **({"stopped": stopped} if stopped else {}),
        **({"note": note} if note else {}),
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
    return replace(
        running,
        model=model,
        request={"messages": running.request["messages"], "params": params},
        status="ok",
        latency_ms=latency_ms,
        response=_with_attempts(kept, attempts),
        message=message,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=_cost(litellm, response, model),
        cached=cached,
        fallbacks=fallbacks,
        stopped=stopped,
        note=note,
        attempts=len(attempts) or 1,
        retries=retries + _http_retries(attempts),
    )
