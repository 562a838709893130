"""The generation paths (plain chat, a forced tool call, tools on "auto") as one chunk generator.

Every request, streamed or not, goes through `generate`, which yields LiteLLM `GenericStreamingChunk`
dicts while llama produces tokens; the non-streaming entry points just collect them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, cast

import litellm
import openai
from litellm.types.utils import GenericStreamingChunk
from llama_cpp.llama_chat_format import chatml_function_calling

from composite_cli.local.chat_format import (
    answered_calls,
    call_key,
    function_calling_messages,
    plain_messages,
)
from composite_cli.local.meter import Cancelled, Meter
from composite_cli.local.model_info import MODEL_NAME, PROVIDER
from composite_cli.local.pool import MeteredLlama, get_pool
from composite_cli.local.request import Request


def _chunk(text: str = "", tool_use: dict[str, Any] | None = None) -> GenericStreamingChunk:
    return GenericStreamingChunk(
        text=text, tool_use=cast(Any, tool_use), is_finished=False, finish_reason="", usage=None, index=0
    )


def _final(finish_reason: str, meter: Meter) -> GenericStreamingChunk:
    """The last chunk: why generation ended, and the token counts.

    An answer ended because it looped says so: finish_reason "length" (cut short, as OpenAI marks an
    answer that ran out of tokens) and `provider_specific_fields={"stopped": "repetition"}`, which
    LiteLLM hands on as `message.provider_specific_fields` and composite's call record keeps.
    """
    chunk = GenericStreamingChunk(
        text="", tool_use=None, is_finished=True, finish_reason=finish_reason, usage=meter.usage(), index=0
    )
    fields: dict[str, Any] = {}
    if meter.stopped is not None:
        chunk["finish_reason"] = "length"
        fields["stopped"] = meter.stopped
    if meter.note is not None:
        fields["note"] = meter.note
    if fields:
        chunk["provider_specific_fields"] = fields
    return chunk


def generate(request: Request, cancel: threading.Event) -> Iterator[GenericStreamingChunk]:
    """Run one request on a pooled instance, yielding chunks as tokens are produced.

    Closing this generator, or setting `cancel`, stops generation at the next token and returns the
    instance to the pool.
    """
    with get_pool().lease(cancel, request.deadline) as llm:
        meter = Meter(cancel, request.deadline, request.sampling["max_tokens"])
        llm.meter = meter
        try:
            choice = request.tool_choice
            if request.tools and choice != "none":
                if choice == "required":
                    # llama's handler knows only "auto" and a named function: force the only tool, if one.
                    choice = _named(request.tools[0]) if len(request.tools) == 1 else "auto"
                if isinstance(choice, dict):
                    yield from _forced_tool(llm, request, choice, meter)
                else:
                    yield from _auto_tools(llm, request, meter)
            else:
                yield from _plain(llm, request, meter)
        except (Cancelled, openai.APIError):  # already final (LiteLLM's exceptions derive from openai's)
            raise
        except ValueError as exc:
            raise _map_value_error(exc) from exc
        except Exception as exc:
            raise litellm.APIError(
                status_code=500,
                message=f"local model failed: {type(exc).__name__}: {exc}",
                llm_provider=PROVIDER,
                model=MODEL_NAME,
            ) from exc


def _named(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool["function"]["name"]}}


def _map_value_error(exc: ValueError) -> Exception:
    message = str(exc)
    if "exceed context window" in message:  # llama: "Requested tokens (N) exceed context window of 2048"
        return litellm.ContextWindowExceededError(
            message=f"prompt too long for the local model: {message}", model=MODEL_NAME, llm_provider=PROVIDER
        )
    if "not found in tools" in message:  # tool_choice names a function that is not in `tools`
        return litellm.BadRequestError(message=message, model=MODEL_NAME, llm_provider=PROVIDER)
    return litellm.APIError(
        status_code=500, message=f"local model failed: {message}", llm_provider=PROVIDER, model=MODEL_NAME
    )


def _plain(llm: MeteredLlama, request: Request, meter: Meter) -> Iterator[GenericStreamingChunk]:
    """Chat without tools, through the GGUF's own chat template.

    Free text is watched for loops (see `repetition`); JSON under a grammar is not, since cutting it
    would leave it unparsable (max_tokens bounds it).
    """
    if request.response_format is None:
        meter.watch_repetition()
    stream: Any = llm.create_chat_completion(
        messages=plain_messages(request.messages),  # type: ignore[arg-type]
        stream=True,
        stop=request.stop,
        seed=request.seed,
        response_format=request.response_format,  # type: ignore[arg-type]
        **request.text_sampling(),
    )
    finish_reason = "stop"
    try:
        for part in stream:
            choice = part["choices"][0]
            text = choice["delta"].get("content")
            if text:
                yield _chunk(text=text)
            finish_reason = choice.get("finish_reason") or finish_reason
    finally:
        stream.close()
    yield _final(finish_reason, meter)


def _forced_tool(
    llm: MeteredLlama, request: Request, choice: dict[str, Any], meter: Meter
) -> Iterator[GenericStreamingChunk]:
    """Call the named function; its JSON arguments stream as they are generated."""
    stream = _function_call(llm, request, choice, stream=True)
    seen: set[int] = set()
    try:
        for part in stream:
            for call in part["choices"][0]["delta"].get("tool_calls") or []:
                index = call.get("index", 0)
                fn = call.get("function") or {}
                # llama repeats id and name on every delta; OpenAI sends them once, on the first one, and
                # consumers that concatenate deltas rely on that.
                first = index not in seen
                seen.add(index)
                yield _chunk(
                    tool_use={
                        "id": call.get("id") if first else None,
                        "type": "function",
                        "function": {
                            "name": fn.get("name") if first else None,
                            "arguments": fn.get("arguments") or "",
                        },
                        "index": index,
                    }
                )
    finally:
        stream.close()
    # llama always says "tool_calls"; arguments that ran out of tokens are cut off, so say "length".
    out_of_tokens = meter.last_call_tokens >= request.sampling["max_tokens"]
    yield _final("length" if out_of_tokens else "tool_calls", meter)


def _auto_tools(llm: MeteredLlama, request: Request, meter: Meter) -> Iterator[GenericStreamingChunk]:
    """Let the model choose between calling tools and answering.

    llama's "auto" handler cannot stream a tool call, and when the model picks a text answer it returns
    empty content (its grammar only allows a function name or end-of-turn there). So: decide (and
    generate any calls) without streaming, and if the model chose to answer, stream a plain chat answer.

    Given a tool's result, this model tends to ask for the very same call again (same function, same
    arguments) instead of answering, so a client loop never ends. A call that only repeats one already
    answered in the conversation is taken as nothing new to ask: the model answers instead, and the
    response says so (`provider_specific_fields.note`).
    """
    result = _function_call(llm, request, "auto", stream=False)
    calls = result["choices"][0]["message"].get("tool_calls") or []
    answered = answered_calls(request.messages)
    if calls and all(call_key(call) in answered for call in calls):
        names = ", ".join(call["function"]["name"] for call in calls)
        meter.note = f"answered instead of repeating an answered tool call ({names})"
        calls = []
    if not calls:
        yield from _plain(llm, request, meter)
        return
    for index, call in enumerate(calls):
        fn = call["function"]
        yield _chunk(
            tool_use={
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": fn["arguments"]},
                "index": index,
            }
        )
    yield _final("tool_calls", meter)


def _function_call(llm: MeteredLlama, request: Request, tool_choice: Any, stream: bool) -> Any:
    if request.seed is not None:
        llm.set_seed(request.seed)  # the handler takes no seed; llama derives each call's seed from this
    # No user `stop` here: a stop string inside the JSON arguments would cut them off.
    return chatml_function_calling(
        llama=llm,
        messages=function_calling_messages(request.messages),
        tools=request.tools,
        tool_choice=tool_choice,
        stream=stream,
        **request.sampling,
    )
