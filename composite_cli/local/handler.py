"""`LocalLLM`, the LiteLLM custom provider, and the handover of chunks from pool workers to callers.

Generation always runs on the pool's worker threads, so the event loop never blocks on the model, and a
consumer that goes away (closed stream, cancelled task) stops it at the next token.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import litellm
from litellm.types.llms.openai import ChatCompletionUsageBlock
from litellm.types.utils import GenericStreamingChunk

from composite_cli.local.generation import generate
from composite_cli.local.meter import Cancelled
from composite_cli.local.model_info import MODEL_NAME
from composite_cli.local.pool import get_pool
from composite_cli.local.request import Request


def _fill(
    model_response: litellm.ModelResponse, chunks: Iterable[GenericStreamingChunk]
) -> litellm.ModelResponse:
    """Assemble streamed chunks into the ModelResponse LiteLLM handed us."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = "stop"
    usage = ChatCompletionUsageBlock(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    extra: dict[str, Any] | None = None  # the last chunk's provider_specific_fields (why it stopped)
    for chunk in chunks:
        text.append(chunk["text"])
        tool_use: Any = chunk.get("tool_use")
        if tool_use:
            call = calls.setdefault(
                tool_use["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = tool_use.get("id") or call["id"]
            call["function"]["name"] = tool_use["function"].get("name") or call["function"]["name"]
            call["function"]["arguments"] += tool_use["function"].get("arguments") or ""
        if chunk["is_finished"]:
            finish_reason, usage = chunk["finish_reason"], chunk["usage"] or usage
            extra = chunk.get("provider_specific_fields") or extra
    tool_calls = [calls[i] for i in sorted(calls)]
    choice: Any = model_response.choices[0]
    choice.message = litellm.Message(
        role="assistant",
        content=None if tool_calls else "".join(text),
        tool_calls=tool_calls or None,
        provider_specific_fields=extra,
    )
    choice.finish_reason = finish_reason
    model_response.model = MODEL_NAME
    model_response.usage = litellm.Usage(  # type: ignore[attr-defined]  # declared only as a hidden field
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        total_tokens=usage["total_tokens"],
    )
    return model_response


def _start(request: Request, post: Callable[[str, Any], None], cancel: threading.Event) -> None:
    """Run `generate` on a pool worker, passing ("chunk", c), then ("done", None) or ("error", e) to `post`.

    All generation happens on the pool's long-lived workers, never on callers' threads: llama.cpp's
    OpenMP build keeps a busy-waiting thread team per calling thread, and once more of those exist
    than there are cores, it falls back to sleeping waits that made multi-threaded instances ~3x slower.
    """

    def work() -> None:
        try:
            for chunk in generate(request, cancel):
                post("chunk", chunk)
            post("done", None)
        except Cancelled:
            pass  # the consumer is gone
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            post("error", exc)

    get_pool().workers.submit(work)


def _run(request: Request) -> Iterator[GenericStreamingChunk]:
    """Chunks of one request for a synchronous consumer; closing this generator stops generation."""
    chunks: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    cancel = threading.Event()
    _start(request, lambda kind, value: chunks.put((kind, value)), cancel)
    try:
        while True:
            kind, value = chunks.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        cancel.set()


async def _arun(request: Request) -> AsyncIterator[GenericStreamingChunk]:
    """Chunks of one request for the event loop; closing this generator or cancelling its task stops
    generation at the next token."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()

    def post(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(chunks.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            cancel.set()

    _start(request, post, cancel)
    try:
        while True:
            kind, value = await chunks.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        cancel.set()


class LocalLLM(litellm.CustomLLM):
    """LiteLLM custom provider running the embedded SmolLM2 model; LiteLLM calls it with keywords only."""

    def completion(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        model_response: litellm.ModelResponse,
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> litellm.ModelResponse:
        """Generate a whole response (on a pool worker; this thread waits)."""
        request = Request.build(messages, optional_params, timeout)
        return _fill(model_response, _run(request))

    async def acompletion(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        model_response: litellm.ModelResponse,
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> litellm.ModelResponse:
        """Generate a whole response on a pool worker; cancelling the task stops generation."""
        request = Request.build(messages, optional_params, timeout)
        return _fill(model_response, [chunk async for chunk in _arun(request)])

    def streaming(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> Iterator[GenericStreamingChunk]:
        """Yield chunks as tokens are generated; the last one carries finish_reason and usage."""
        request = Request.build(messages, optional_params, timeout)
        return _run(request)

    async def astreaming(  # type: ignore[override]
        self,
        *,
        messages: list[Any],
        optional_params: dict[str, Any],
        timeout: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenericStreamingChunk]:
        """Async `streaming`; generation stops at the next token when this generator is closed."""
        request = Request.build(messages, optional_params, timeout)
        async for chunk in _arun(request):
            yield chunk
